"""Audible-video I/O on PyAV: probe, decode frames and audio, write H.264 + AAC mp4."""

from tavgbench.media.io import (
    MAX_FPS,
    MAX_SIDE,
    MediaInfo,
    decode_audio,
    decode_frames,
    frame_times,
    probe,
    read_wav,
    write_audible_video,
)

__all__ = [
    "MAX_FPS",
    "MAX_SIDE",
    "MediaInfo",
    "decode_audio",
    "decode_frames",
    "frame_times",
    "probe",
    "read_wav",
    "write_audible_video",
]
