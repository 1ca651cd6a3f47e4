"""Streaming sampler audio: each chunk's windows are those of the portrait-led features `[features[0], features...]`
(as in training), gathered per chunk without a whole-stream copy of the features."""

from __future__ import annotations

import torch

from echotorrent_core.models.audio_windows import first_frame_window, latent_frame_windows
from echotorrent_core.streaming import StreamingSampler, StreamSettings
from echotorrent_core.streaming.denoise import ChunkDenoiser, NullConditions

from allocations import LargestNewStorage
from sampler_inputs import stream_inputs, tiny_models

SETTINGS = StreamSettings(chunk_frames=3, window_frames=6, steps=1)


def test_chunk_windows_are_those_of_the_portrait_led_features(monkeypatch) -> None:
    dit, vae = tiny_models()
    frames = 12 * 3 + 5  # the last chunk reaches past the audio: its windows repeat the last row
    reference, features = stream_inputs(frames, seed=2)
    sink, chunks = [], []
    for_frames, chunk_conditions = NullConditions.for_frames, ChunkDenoiser.chunk_conditions
    monkeypatch.setattr(NullConditions, "for_frames",
                        lambda self, windows: sink.append(windows) or for_frames(self, windows))
    monkeypatch.setattr(ChunkDenoiser, "chunk_conditions",
                        lambda self, windows: chunks.append(windows) or chunk_conditions(self, windows))
    list(StreamingSampler(dit, vae, SETTINGS).stream(reference, features))

    padded = torch.cat([features[:1], features])
    assert torch.equal(sink[0][0], first_frame_window(padded, dit.cfg.audio)[None]) and sink[0][1] is None
    assert len(chunks) == 4
    for index, (first, windows) in enumerate(chunks):
        start = SETTINGS.sink_frames + index * SETTINGS.chunk_frames
        expected = latent_frame_windows(padded, range(start, start + SETTINGS.chunk_frames), dit.cfg.audio)[None]
        assert first is None and torch.equal(windows, expected), index


def test_a_stream_copies_no_more_than_a_chunk_of_its_audio_features() -> None:
    dit, vae = tiny_models()
    reference, features = stream_inputs(40_000, seed=3)  # 10 MB of features; two chunks are generated from them
    recorder = LargestNewStorage(features)
    with recorder:
        chunks = list(StreamingSampler(dit, vae, SETTINGS).stream(reference, features, num_frames=24))
    assert sum(chunk.frames.shape[0] for chunk in chunks) == 24
    # a whole-stream copy, or finiteness masks of the whole tensor (a bool per value), would be this large or larger
    assert 0 < recorder.largest < features.nbytes // 4, (recorder.largest, features.nbytes)
