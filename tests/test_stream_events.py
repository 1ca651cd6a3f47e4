"""The live player's events (nodes/progress.py, stream_preview.py, node_events.py): what a chunk loop sends, checked
by decoding it back, and the bounded log that a reloaded page catches up from."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_nodes import comfy, pack  # noqa: F401  (fixtures: ComfyUI's modules, the pack as a package)

FPS = 25.0
RATE = 22050
HEIGHT, WIDTH = 96, 400  # wider than the player's size: the frames are scaled down
CHUNKS = (12, 12, 6)  # frames per chunk; the last one is cut to the audio


@pytest.fixture
def events(pack):  # noqa: F811
    node_events = pack.node_events
    sent = []
    node_events.set_transport(lambda name, message, client: sent.append((name, message, client)))
    yield sent
    node_events.set_transport(None)


def _stream_inputs(frames: int) -> tuple[torch.Tensor, dict]:
    video = torch.rand(frames, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(0))
    video = F.avg_pool2d(video.permute(0, 3, 1, 2), 9, 1, 4).permute(0, 2, 3, 1)  # smooth: JPEG keeps it closely
    seconds = frames / FPS + 0.03  # a little longer than the video, as an audio file's tail
    time = torch.arange(round(seconds * RATE)) / RATE
    left, right = 0.5 * torch.sin(2 * torch.pi * 220 * time), 0.2 * torch.sin(2 * torch.pi * 330 * time)
    return video, {"waveform": torch.stack([left, right])[None], "sample_rate": RATE}


def _run_chunks(pack, video: torch.Tensor, audio: dict, prompt_id: str = "prompt-1", node: str = "7"):  # noqa: F811
    from comfy_execution.utils import CurrentNodeContext

    preview = pack.progress.StreamPreview(FPS, video.shape[0], HEIGHT, WIDTH, audio=audio)
    with CurrentNodeContext(prompt_id, node):
        progress = pack.progress.ChunkProgress(len(CHUNKS), preview)
        start = 0
        for index, count in enumerate(CHUNKS):
            progress.done(index + 1, video[start : start + count])
            start += count


def test_a_stream_sends_start_every_chunk_with_its_sound_and_end(pack, events):  # noqa: F811
    video, audio = _stream_inputs(sum(CHUNKS))
    _run_chunks(pack, video, audio)

    names = [name for name, _, _ in events]
    assert names == ["echotorrent.stream.start"] + ["echotorrent.stream.chunk"] * 3 + ["echotorrent.stream.end"]
    messages = [message for _, message, _ in events]
    assert all(m["prompt_id"] == "prompt-1" and m["node"] == "7" and name == f"{m['channel']}.{m['kind']}"
               for name, m, _ in events)
    assert [m["seq"] for m in messages] == sorted({m["seq"] for m in messages})
    start, chunks, end = messages[0], messages[1:-1], messages[-1]
    assert start["chunks_total"] == 3 and start["frames_total"] == 30 and start["fps"] == FPS
    assert (start["height"], start["width"]) == (77, 320)  # longest side 320, aspect kept
    assert start["sample_rate"] == RATE
    assert end["chunks_done"] == 3 and end["saved_video"] is None and end["seconds"] >= 0

    mono = audio["waveform"][0].mean(0)
    first_sample = 0
    for index, (chunk, count) in enumerate(zip(chunks, CHUNKS)):
        assert (chunk["index"], chunk["frame_count"], chunk["first_frame"]) == (index, count, sum(CHUNKS[:index]))
        assert chunk["seconds"] >= 0
        sound = chunk["audio"]
        assert sound["first_sample"] == first_sample  # consecutive, no gap, no overlap
        assert sound["samples"] == round((chunk["first_frame"] + count) * RATE / FPS) - first_sample
        pcm = np.frombuffer(base64.b64decode(sound["pcm16"]), "<i2").astype(np.float32) / 32767
        assert pcm.shape == (sound["samples"],)
        np.testing.assert_allclose(pcm, mono[first_sample : first_sample + pcm.shape[0]].numpy(), atol=1 / 32767)
        first_sample += sound["samples"]

        expected = F.interpolate(video[chunk["first_frame"] : chunk["first_frame"] + count].permute(0, 3, 1, 2),
                                 size=(77, 320), mode="area").permute(0, 2, 3, 1).numpy()
        assert len(chunk["jpeg"]) == count
        for frame, encoded in zip(expected, chunk["jpeg"]):
            with Image.open(io.BytesIO(base64.b64decode(encoded))) as image:
                assert image.format == "JPEG" and image.size == (320, 77)
                decoded = np.asarray(image.convert("RGB"), np.float32) / 255
            assert np.abs(decoded - frame).mean() < 0.02
    assert first_sample == round(30 * RATE / FPS)


def test_chunks_are_encoded_beside_the_loop_and_arrive_in_order(pack):  # noqa: F811
    """done() hands the chunk to the encoder and returns: the loop goes on while the previous chunk is sent."""
    import threading

    from comfy_execution.utils import CurrentNodeContext

    release, sent = threading.Event(), []

    def slow_transport(name: str, message: dict, client: str | None) -> None:
        if message["kind"] == "chunk" and message["index"] == 0:
            assert release.wait(30)
        sent.append((message["kind"], message.get("index"), threading.current_thread().name))

    video, audio = _stream_inputs(sum(CHUNKS))
    pack.node_events.set_transport(slow_transport)
    try:
        with CurrentNodeContext("prompt-2", "8"):
            progress = pack.progress.ChunkProgress(len(CHUNKS), pack.progress.StreamPreview(FPS, 30, HEIGHT, WIDTH,
                                                                                            audio=audio))
            progress.done(1, video[:12])
            assert [kind for kind, _, _ in sent] == ["start"]  # chunk 0 is still being sent
            release.set()
            progress.done(2, video[12:24])
            progress.done(3, video[24:])
    finally:
        pack.node_events.set_transport(None)
    assert [(kind, index) for kind, index, _ in sent] == [("start", None), ("chunk", 0), ("chunk", 1), ("chunk", 2),
                                                           ("end", None)]
    assert all(thread.startswith("echotorrent-player") for kind, _, thread in sent if kind == "chunk")


def test_the_progress_bar_still_previews_each_chunks_last_frame(pack, comfy, events):  # noqa: F811
    calls = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, **_: calls.append((value, total, preview)))
    try:
        video, audio = _stream_inputs(sum(CHUNKS))
        _run_chunks(pack, video, audio)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert [(value, total) for value, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    kind, image, max_size = calls[-1][2]
    assert kind == "JPEG" and image.size == (WIDTH, HEIGHT) and max_size == WIDTH


def test_outside_a_node_execution_nothing_is_sent(pack, events):  # noqa: F811
    preview = pack.progress.StreamPreview(FPS, 12, HEIGHT, WIDTH)
    progress = pack.progress.ChunkProgress(1, preview)
    progress.done(1, torch.zeros(12, HEIGHT, WIDTH, 3))
    assert events == []


def test_the_log_keeps_each_streams_header_and_its_newest_events_within_bounds(pack, monkeypatch):  # noqa: F811
    node_events = pack.node_events
    log = node_events.EventLog()
    monkeypatch.setattr(node_events, "MAX_STREAM_BYTES", 2000)

    def keep(prompt: str, kind: str, size: int = 0) -> dict:
        return log.record("tab", {"channel": "c", "prompt_id": prompt, "node": "1", "kind": kind, "x": "a" * size},
                          keep=True)

    keep("p0", "start")
    for _ in range(10):
        keep("p0", "chunk", 500)
    [stream] = log.streams("tab")
    assert stream["header"]["kind"] == "start" and stream["header"]["kept"] == 0
    assert 1 <= len(stream["events"]) <= 3 and stream["dropped"] == 10 - len(stream["events"])
    assert [event["seq"] for event in stream["events"]] == list(range(12 - len(stream["events"]), 12))
    assert [event["kept"] for event in stream["events"]] == list(range(11 - len(stream["events"]), 11))
    assert log.streams("other tab") == []
    assert log.streams("tab", after=11)[0]["events"] == []
    for number in range(1, node_events.MAX_STREAMS + 1):
        keep(f"p{number}", "start")
    assert [stream["prompt_id"] for stream in log.streams("tab")] == [
        f"p{number}" for number in range(1, node_events.MAX_STREAMS + 1)
    ]


def test_events_from_several_threads_leave_in_seq_order_and_number_each_streams_kept_ones(
    pack, events, monkeypatch  # noqa: F811
):
    """seq rises by one in the order the transport gets the events, whichever thread sends them; each stream's kept
    events are numbered 0, 1, 2, ... without a gap (the page's sign of a missed one); events not kept have none.
    Stamping is slowed down, so that a thread stamped but not yet sending lets the others overtake it unless
    sending is ordered."""
    import threading
    import time

    log = pack.node_events.EVENT_LOG
    stamp = log.record

    def slow_stamp(*args, **kwargs):
        stamped = stamp(*args, **kwargs)
        time.sleep(0.0005)
        return stamped

    monkeypatch.setattr(log, "record", slow_stamp)
    targets = [pack.node_events.NodeEventTarget(f"prompt-{n}", "3", "tab") for n in range(4)]
    barrier = threading.Barrier(len(targets))

    def send_many(target) -> None:
        barrier.wait()
        for number in range(100):
            target.send("c", "tick", {"n": number}, keep=number % 5 != 4)

    threads = [threading.Thread(target=send_many, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = [message["seq"] for _, message, _ in events]
    assert len(seqs) == 400 and seqs == list(range(seqs[0], seqs[0] + 400))
    for target in targets:
        mine = [message for _, message, _ in events if message["prompt_id"] == target.prompt_id]
        assert [message["n"] for message in mine] == list(range(100))
        assert [message["kept"] for message in mine if message["n"] % 5 != 4] == list(range(80))
        assert all(message["kept"] is None for message in mine if message["n"] % 5 == 4)
