"""EchoTorrent Save Stream: runs an ECHOTORRENT_STREAM and writes every chunk to an mp4 in ComfyUI's output folder
as it arrives (h264 + aac with the original sound, fragmented mp4), holding no frame batch.

Memory is the model, the KV cache and one chunk, whatever the audio length. The file is playable after every chunk:
when the run is interrupted (Cancel, POST /interrupt) or fails, the chunks done so far stay in a complete mp4, and
the node says so in the log and on the node before passing the interruption on.
"""

from __future__ import annotations

import logging
import os
import sys

import comfy.model_management
import folder_paths
import torch
from comfy_api.latest import InputImpl, io, ui

from echotorrent_core.media import Mp4StreamWriter
from echotorrent_core.pipeline import MAX_MUXED_CHANNELS

from .decode import DECODER_CHOICES, choose_decoder
from .progress import ChunkProgress
from .stream import chunks, open_stream, player_preview
from .types import EchoTorrentStream, StreamType

LOG = logging.getLogger("echotorrent")
DEFAULT_PREFIX = "video/echotorrent"


def soundtrack(audio: dict) -> tuple[torch.Tensor, int]:
    """ComfyUI AUDIO `{"waveform": [1, C, S], "sample_rate"}` -> (`[C, S]` for the mp4, rate); more than two
    channels are mixed down to mono."""
    waveform = audio["waveform"][0].float()
    if waveform.shape[0] > MAX_MUXED_CHANNELS:
        waveform = waveform.mean(dim=0, keepdim=True)
    return waveform, int(audio["sample_rate"])


def output_file(prefix: str, width: int, height: int) -> tuple[str, str, str]:
    """(full path, file name, subfolder) of the next `<prefix>_NNNNN_.mp4` in the output folder, numbered like
    core Save Video."""
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
        prefix, folder_paths.get_output_directory(), width, height)
    file = f"{name}_{counter:05}_.mp4"
    return os.path.join(folder, file), file, subfolder


class SaveStream(io.ComfyNode):
    """Generates the stream chunk by chunk into an mp4 and previews it as a video on the node."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="EchoTorrentSaveStream",
            display_name="EchoTorrent Save Stream",
            category="EchoTorrent/output",
            description="Generates the stream and writes each chunk to an mp4 (h264 + aac, the original audio) in "
                        "the output folder as soon as it is decoded: memory stays constant however long the audio "
                        "is, and an interrupted run leaves a playable file of the chunks done.",
            inputs=[
                StreamType.Input("stream", tooltip="From EchoTorrent Stream."),
                io.String.Input("filename_prefix", default=DEFAULT_PREFIX,
                                tooltip="Output file prefix, relative to ComfyUI's output folder (subfolders and "
                                        "%date:yyyy-MM-dd% style fields as in Save Video)."),
                io.Combo.Input("decoder", options=list(DECODER_CHOICES), default="auto",
                               tooltip="auto: the decoder refiner when Load EchoTorrent has one, else the base VAE "
                                       "decoder."),
                io.Int.Input("crf", default=18, min=0, max=51,
                             tooltip="h264 quality: lower is better and larger (18 is visually lossless)."),
            ],
            outputs=[io.Video.Output("video", display_name="video",
                                     tooltip="The saved mp4, read from disk when a node uses it.")],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, stream: EchoTorrentStream, filename_prefix: str, decoder: str, crf: int) -> io.NodeOutput:
        sampler = open_stream(stream, choose_decoder(stream.model, decoder), say=cls._say)
        path, file, subfolder = output_file(filename_prefix, stream.width, stream.height)
        saved = ui.SavedResult(file, subfolder, io.FolderType.output)
        audio, rate = soundtrack(stream.audio.audio)
        total = sampler.num_chunks(stream.audio.num_frames)
        progress = ChunkProgress(total, player_preview(stream, dict(saved)))
        writer = Mp4StreamWriter(path, fps=stream.audio.fps, width=stream.width, height=stream.height, audio=audio,
                                 audio_rate=rate, crf=crf)
        done = 0
        try:
            with writer:
                for chunk in chunks(stream, sampler):
                    writer.write(chunk.frames)
                    done = chunk.index + 1
                    progress.done(done, chunk.frames)
        except BaseException as error:
            cls._report_partial(error, writer, done, total, path, stream.audio.fps)
            raise
        cls._say(f"saved {writer.frames_written} frames ({total} chunks) to {path}")
        return io.NodeOutput(InputImpl.VideoFromFile(path), ui=ui.PreviewVideo([saved]))

    @classmethod
    def _report_partial(cls, error: BaseException, writer: Mp4StreamWriter, done: int, total: int, path: str,
                        fps: float) -> None:
        """Say what the stopped run left on disk (the writer has closed the file: it is a complete mp4)."""
        reason = ("interrupted" if isinstance(error, comfy.model_management.InterruptProcessingException)
                  else f"stopped by {type(error).__name__}")
        if writer.frames_written == 0:
            cls._say(f"{reason} before the first chunk; no file was written")
            return
        cls._say(f"{reason} after {done} of {total} chunks: {writer.frames_written} frames "
                 f"({writer.frames_written / fps:.2f} s) saved as a playable mp4 to {path}")

    @classmethod
    def _say(cls, message: str) -> None:
        """Log `message` and show it on the node in the UI."""
        LOG.info("EchoTorrent Save Stream: %s", message)
        node_id = None if cls.hidden is None else cls.hidden.unique_id
        server = getattr(getattr(sys.modules.get("server"), "PromptServer", None), "instance", None)
        if node_id is not None and server is not None:  # None when the node is called outside a ComfyUI server
            server.send_progress_text(message, node_id)
