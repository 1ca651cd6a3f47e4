"""Errors raised for media input that cannot be used."""

from __future__ import annotations


class MediaError(ValueError):
    """An image, audio or video input is empty, corrupt, or has the wrong shape, channels, range or size."""


class AudioTooShortError(MediaError):
    """Audio is shorter than the minimum duration the caller asked for."""
