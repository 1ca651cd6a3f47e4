"""Decode a video stream at a chosen frame rate (nearest source frame in time), one frame at a time."""

from __future__ import annotations

from collections.abc import Iterator

import av


def frames_at_rate(container: av.container.InputContainer, fps: float,
                   max_frames: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield `(i, frame)` for output frames i = 0, 1, ... at `fps` from the first video stream of `container`.

    Output frame i shows the source frame whose presentation time (counted from the first frame) is nearest to
    `i / fps`; the last source frame lasts one source frame period, and a clip of duration D gives `floor(D * fps)`
    frames (a 30 fps clip drops every sixth frame at 25 fps, a 24 fps clip shows one frame twice per second). The
    same source frame may be yielded more than once (convert it once per yield or cache it). Memory: two frames.
    """
    stream = container.streams.video[0]
    rate = float(stream.guessed_rate or stream.average_rate or fps)
    previous: tuple[float, av.VideoFrame] | None = None
    first_time: float | None = None
    index = 0
    for number, frame in enumerate(container.decode(stream)):
        time = frame.time if frame.time is not None else number / rate
        if first_time is None:
            first_time = time
        time -= first_time
        if previous is not None:
            midpoint = (previous[0] + time) / 2
            while index / fps < midpoint:
                if max_frames is not None and index >= max_frames:
                    return
                yield index, previous[1]
                index += 1
        previous = (time, frame)
    if previous is None:
        return
    duration = previous[0] + 1.0 / rate
    resolution = float(stream.time_base) if stream.time_base else 0.0  # e.g. Matroska keeps milliseconds
    while (index + 1) / fps <= duration + resolution + 1e-9 and (max_frames is None or index < max_frames):
        yield index, previous[1]
        index += 1
