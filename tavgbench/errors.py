"""User-facing errors: each message names the file (or thing) and what to do about it."""

from __future__ import annotations


class TavgbenchError(Exception):
    """An error a user can act on; the CLI prints it as one red line and exits non-zero."""


class MediaError(TavgbenchError):
    """A media file cannot be read or written."""


class ManifestError(TavgbenchError):
    """A split manifest is malformed or cannot be found."""


class WeightsError(TavgbenchError):
    """A checkpoint is missing, corrupt, or fails its sha256 check."""
