"""Media I/O: reference images, speech audio, and incremental mp4 writing / reading."""

from .audio import (
    audio_duration_frames,
    load_audio,
    load_audio_channels,
    loudness_gain,
    normalize_loudness,
    to_mono_resampled,
)
from .errors import AudioTooShortError, MediaError
from .image_decode import image_to_unit_rgb
from .images import RESIZE_POLICIES, ResizePolicy, check_target_size, load_image
from .video_reader import read_video_frames
from .video_writer import Mp4StreamWriter

__all__ = [
    "RESIZE_POLICIES",
    "AudioTooShortError",
    "MediaError",
    "Mp4StreamWriter",
    "ResizePolicy",
    "audio_duration_frames",
    "check_target_size",
    "image_to_unit_rgb",
    "load_audio",
    "load_audio_channels",
    "load_image",
    "loudness_gain",
    "normalize_loudness",
    "read_video_frames",
    "to_mono_resampled",
]
