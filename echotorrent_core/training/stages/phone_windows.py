"""Speech windows with frame-level phone labels, for pretraining the audio encoder on phonetic content.

A window is `frames` video frames of a clip of the clip folder: `frames * sample_rate / fps` samples of mono
16 kHz audio at -23 LUFS (as the pipeline feeds the encoder), starting on a video frame, with the phone sounding at
the centre of every video frame (`(v + 0.5) / fps`, as SynthTalk's `phone` track) taken from the clip's
ground-truth `phone_segments` (`[N, 3]`: phone id, start s, end s; SynthTalk writes them from espeak-ng's phoneme
events or pocketsphinx forced alignment). Times outside every segment are silence. Labels are at the video rate
because the encoder's transformer runs on CNN features interpolated to the video rate (`AudioEncoder.encode`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from ...checkpoints.safetensors_io import read_state_dict
from .clip_source import iter_clips, read_index


def frame_centres(first_frame: int, frames: int, fps: float) -> torch.Tensor:
    """Time in seconds of the centre of video frames `first_frame ..`: `[frames]` float64."""
    return (torch.arange(first_frame, first_frame + frames, dtype=torch.float64) + 0.5) / fps


def phones_at(times: torch.Tensor, segments: torch.Tensor, silence_id: int) -> torch.Tensor:
    """Phone id at each time `[T]` (seconds) from `segments` `[N, 3]` (id, start, end); `silence_id` elsewhere."""
    labels = torch.full(times.shape, silence_id, dtype=torch.int64)
    for phone, start, end in segments.double().tolist():
        labels[(times >= start) & (times < end)] = int(phone)
    return labels


def _segments(folder: Path, entry: dict) -> torch.Tensor:
    if not entry.get("params"):
        raise ValueError(f"clip {entry['id']} has no params file: the audio-encoder stage needs phone_segments")
    params = read_state_dict(folder / entry["params"])[0]
    if "phone_segments" not in params:
        raise ValueError(f"{entry['params']} has no phone_segments (ground-truth phone timing)")
    return params["phone_segments"]


def prepare_phone_windows(folder: str, split: str, frames: int, windows_per_clip: int, silence_id: int,
                          sample_rate: int, fps: float, limit: int | None = None) -> dict[str, torch.Tensor]:
    """`{"audio": [N, samples] float32, "phones": [N, frames] int64, "voice": [N] int64}` for every clip of `split`
    (windows evenly spaced over each clip, starting on video frames; clips shorter than one window are skipped).
    `voice` numbers the clip's voice in order of first appearance within the split (for per-voice evaluation)."""
    hop = sample_rate / fps
    if abs(hop - round(hop)) > 1e-9:
        raise ValueError(f"sample_rate / fps must be whole samples per video frame, got {sample_rate} / {fps}")
    hop = round(hop)
    samples = frames * hop
    root = Path(folder)
    entries = {entry["id"]: entry for entry in read_index(root)["clips"] if entry.get("split") == split}
    audio, phones, voices, voice_ids = [], [], [], {}
    for clip in tqdm(iter_clips(root, split, 64, sample_rate, fps, limit), desc=f"phone windows ({split})"):
        if clip.audio is None or clip.audio.shape[0] < samples:
            continue
        entry = entries[clip.id]
        segments = _segments(root, entry)
        voice = voice_ids.setdefault(str(entry.get("voice")), len(voice_ids))
        last = (clip.audio.shape[0] - samples) // hop
        count = 1 if last == 0 else min(windows_per_clip, last + 1)
        for k in range(count):
            first = round(k * last / max(count - 1, 1))
            audio.append(clip.audio[first * hop : first * hop + samples])
            phones.append(phones_at(frame_centres(first, frames, fps), segments, silence_id))
            voices.append(voice)
    if not audio:
        raise ValueError(f"no clip of split {split!r} in {folder} has {frames / fps:g} s of audio")
    return {"audio": torch.stack(audio).float(), "phones": torch.stack(phones),
            "voice": torch.tensor(voices, dtype=torch.int64)}
