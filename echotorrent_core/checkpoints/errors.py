"""Errors raised by checkpoint loading."""


class CheckpointError(ValueError):
    """A checkpoint file could not be used; the message says what was expected and what was found."""
