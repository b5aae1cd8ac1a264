"""Decoding and encoding audible video with PyAV (FFmpeg inside the wheel).

One module for every read and write of media in tavgbench, so that real and generated clips go
through exactly the same decode. Frames come out as uint8 RGB at native size (rotation metadata
applied); audio comes out as float32 mono (the mean of the channels) at the stream's own rate, or
resampled to a target rate with the torchaudio-equivalent sinc resampler, and cropped to the
container duration (AAC encoders pad the last frame and prepend priming samples, so decoders
return more samples than the clip holds).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from tavgbench.errors import MediaError

#: Refused before any decoding: larger frames or rates are not generated audible video.
MAX_SIDE = 4096
MAX_FPS = 240.0


@dataclass(frozen=True)
class MediaInfo:
    """What a probe of one file found, before any full decode.

    Attributes:
        path: the file probed.
        container: FFmpeg's container format name (``"mov,mp4,m4a,3gp,3g2,mj2"``, ``"wav"``).
        duration: container duration in seconds (0.0 when unknown).
        has_video: whether there is a video stream.
        width: displayed width in pixels, rotation applied (0 without video).
        height: displayed height in pixels, rotation applied (0 without video).
        fps: average frame rate (0.0 without video or when unknown).
        num_frames: frame count from the container, or estimated from duration and fps.
        video_codec: codec name of the video stream ("" without video).
        rotation: display rotation in degrees, counter-clockwise (0, 90, 180, 270).
        has_audio: whether there is an audio stream.
        sample_rate: audio sample rate in Hz (0 without audio).
        channels: audio channel count (0 without audio).
        audio_codec: codec name of the audio stream ("" without audio).
    """

    path: str
    container: str
    duration: float
    has_video: bool
    width: int
    height: int
    fps: float
    num_frames: int
    video_codec: str
    rotation: int
    has_audio: bool
    sample_rate: int
    channels: int
    audio_codec: str

    def as_dict(self) -> dict[str, Any]:
        """The probe as a plain dict (for JSON reports)."""
        return asdict(self)


def _open(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise MediaError(f"{path}: file not found")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file")
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"{path}: not a readable media file ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _stream_rotation(container: av.container.InputContainer) -> int:
    """Rotation of the first video frame's display matrix, normalised to 0/90/180/270."""
    for frame in container.decode(video=0):
        return _normalise_rotation(frame.rotation)
    return 0


def _normalise_rotation(degrees: float) -> int:
    return round(degrees / 90.0) % 4 * 90


def probe(path: str | os.PathLike[str]) -> MediaInfo:
    """Read stream facts of a media file without decoding it fully.

    Args:
        path: an audible video (``.mp4`` and friends) or an audio file (``.wav``).

    Returns:
        The :class:`MediaInfo` of the file.

    Raises:
        MediaError: the file is missing or is not a media file FFmpeg can open.
    """
    path = Path(path)
    with _open(path) as container:
        return _probe(container, path, with_rotation=True)


def _probe(container: av.container.InputContainer, path: Path, *, with_rotation: bool) -> MediaInfo:
    """:func:`probe` of an open container; ``with_rotation`` decodes the first frame to read
    its display rotation (0 otherwise: decoders apply it per frame anyway)."""
    duration = container.duration / av.time_base if container.duration else 0.0
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    width = height = num_frames = rotation = 0
    fps = 0.0
    video_codec = ""
    if video is not None:
        width, height = video.codec_context.width, video.codec_context.height
        fps = float(video.average_rate) if video.average_rate else 0.0
        video_codec = video.codec_context.name
        num_frames = int(video.frames or 0)
        if not num_frames and fps and duration:
            num_frames = round(duration * fps)
        if not duration and video.duration and video.time_base:
            duration = float(video.duration * video.time_base)
        if with_rotation and width <= MAX_SIDE and height <= MAX_SIDE:
            try:
                rotation = _stream_rotation(container)
            except av.error.FFmpegError:
                rotation = 0
        if rotation in (90, 270):
            width, height = height, width
    if audio is not None and not duration and audio.duration and audio.time_base:
        duration = float(audio.duration * audio.time_base)
    return MediaInfo(
        path=str(path),
        container=container.format.name,
        duration=float(duration),
        has_video=video is not None,
        width=int(width),
        height=int(height),
        fps=fps,
        num_frames=num_frames,
        video_codec=video_codec,
        rotation=rotation,
        has_audio=audio is not None,
        sample_rate=int(audio.codec_context.sample_rate) if audio is not None else 0,
        channels=int(audio.codec_context.channels) if audio is not None else 0,
        audio_codec=audio.codec_context.name if audio is not None else "",
    )


def _check_video_bounds(path: Path, info: MediaInfo) -> None:
    if not info.has_video:
        raise MediaError(f"{path}: has no video stream")
    if max(info.width, info.height) > MAX_SIDE:
        raise MediaError(
            f"{path}: frame size {info.width}x{info.height} exceeds {MAX_SIDE} px; "
            "refusing to decode"
        )
    if info.fps > MAX_FPS:
        raise MediaError(
            f"{path}: frame rate {info.fps:g} fps exceeds {MAX_FPS:g}; refusing to decode"
        )


def _frames_with_times(
    container: av.container.InputContainer,
) -> Iterator[tuple[float, av.VideoFrame]]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    start = stream.start_time if stream.start_time is not None else 0
    time_base = stream.time_base or Fraction(1, 1)
    last = -math.inf
    for frame in container.decode(stream):
        if frame.pts is None:
            # Streams without timestamps: keep decode order, one frame period apart.
            t = last + 1.0 / float(stream.average_rate or 25) if last > -math.inf else 0.0
        else:
            t = float((frame.pts - start) * time_base)
        last = t
        yield t, frame


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    rotation = _normalise_rotation(frame.rotation)
    if rotation:
        # Counter-clockwise display rotation; np.rot90 also turns counter-clockwise for k > 0.
        rgb = np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))
    return rgb


def frame_times(
    duration: float, *, num_frames: int | None = None, fps: float | None = None
) -> np.ndarray:
    """Target presentation times (seconds) of the frames to sample from a clip.

    ``num_frames`` gives the centres of that many equal segments of the clip (evenly spaced
    over the duration, never the very first or last instant); ``fps`` gives ``k / fps`` for
    every ``k`` with ``k / fps < duration``.
    """
    if (num_frames is None) == (fps is None):
        raise ValueError("give exactly one of num_frames and fps")
    if num_frames is not None:
        if num_frames < 1:
            raise ValueError("num_frames must be >= 1")
        return (np.arange(num_frames) + 0.5) * (duration / num_frames)
    assert fps is not None
    if fps <= 0:
        raise ValueError("fps must be > 0")
    return np.arange(max(1, math.ceil(duration * fps - 1e-9))) / fps


def decode_frames(
    path: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    fps: float | None = None,
) -> np.ndarray:
    """Decode video frames as uint8 RGB at native size.

    Exactly one of the options selects which frames: ``num_frames`` evenly spaced over the
    duration, ``fps`` a fixed rate, or neither for every frame. A sampled time shows the frame
    on screen at that time (the last frame whose timestamp is not after it), which is right for
    variable frame rate too.

    Args:
        path: the video file.
        num_frames: how many frames to take, evenly spaced over the clip.
        fps: take frames at this rate instead.

    Returns:
        ``[t, h, w, 3]`` uint8 array.

    Raises:
        MediaError: the file is unreadable, has no video, no frames, or exceeds the size bounds.
    """
    path = Path(path)
    try:
        with _open(path) as container:
            # One open: the bounds need no rotation (it only swaps width and height), and
            # _to_rgb applies each frame's own rotation.
            info = _probe(container, path, with_rotation=False)
            _check_video_bounds(path, info)
            if num_frames is None and fps is None:
                frames = [_to_rgb(f) for _, f in _frames_with_times(container)]
            else:
                frames = _sample_frames(container, info, num_frames=num_frames, fps=fps)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{path}: video stream cannot be decoded ({_reason(exc)})") from exc
    if not frames:
        raise MediaError(f"{path}: video stream has no decodable frames")
    return np.stack(frames)


def _sample_frames(
    container: av.container.InputContainer,
    info: MediaInfo,
    *,
    num_frames: int | None,
    fps: float | None,
) -> list[np.ndarray]:
    duration = info.duration
    if duration <= 0:
        # No duration in the container: count frames first (cheap next to converting them).
        duration = sum(1 for _ in container.decode(video=0)) / (info.fps or 25.0)
        container.seek(0)
    targets = frame_times(duration, num_frames=num_frames, fps=fps)
    picked: list[np.ndarray] = []
    previous: av.VideoFrame | None = None
    k = 0
    for t, frame in _frames_with_times(container):
        while k < len(targets) and t > targets[k] + 1e-9:
            # The frame on screen at targets[k] is the previous one (or this one at the start).
            picked.append(_to_rgb(previous if previous is not None else frame))
            k += 1
        if k == len(targets):
            break
        previous = frame
    while k < len(targets) and previous is not None:
        picked.append(_to_rgb(previous))
        k += 1
    return picked


def decode_audio(
    path: str | os.PathLike[str], *, sample_rate: int | None = None, channels: str = "mean"
) -> tuple[np.ndarray, int]:
    """Decode the first audio stream as float32 mono, cropped to the container duration.

    Channels are averaged (stereo, 5.1, ...) with ``channels="mean"``, as VGGish's reference
    does; ``channels="first"`` keeps the first channel, as torchaudio's Kaldi fbank (and so
    ImageBind) does. With ``sample_rate`` the waveform is resampled with
    :func:`tavgbench.extractors.audio.resample` (torchaudio's algorithm); without it the stream's
    own rate is kept, so each extractor can resample exactly as its reference does.

    Args:
        path: an audible video or an audio file.
        sample_rate: target rate in Hz, or None for the native rate.
        channels: ``"mean"`` or ``"first"``.

    Returns:
        ``(waveform [samples] float32, rate)``.

    Raises:
        MediaError: the file is unreadable or has no decodable audio stream.
    """
    path = Path(path)
    if channels not in ("mean", "first"):
        raise ValueError(f"channels must be 'mean' or 'first', got {channels!r}")
    with _open(path) as container:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate)
        if rate <= 0:
            raise MediaError(f"{path}: audio stream has no sample rate")
        duration = container.duration / av.time_base if container.duration else 0.0
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.append(_mono(frame, first_only=channels == "first"))
        except av.error.FFmpegError as exc:
            raise MediaError(f"{path}: audio stream cannot be decoded ({_reason(exc)})") from exc
    if not chunks:
        raise MediaError(f"{path}: audio stream has no decodable samples")
    waveform = np.concatenate(chunks)
    if duration > 0:
        waveform = waveform[: round(duration * rate)]
    if sample_rate is not None and sample_rate != rate:
        import torch

        from tavgbench.extractors.audio import resample

        waveform = resample(torch.from_numpy(waveform), rate, sample_rate).numpy()
        rate = sample_rate
    return np.ascontiguousarray(waveform, dtype=np.float32), rate


def _mono(frame: av.AudioFrame, *, first_only: bool = False) -> np.ndarray:
    data = frame.to_ndarray()
    if data.dtype.kind in "iu":
        data = data.astype(np.float64) / float(np.iinfo(data.dtype).max + 1)
    channels = len(frame.layout.channels)
    # Planar audio is [channels, samples]; packed audio interleaves the channels.
    data = data.reshape(channels, -1) if frame.format.is_planar else data.reshape(-1, channels).T
    if first_only:
        return data[0].astype(np.float32)
    return data.astype(np.float64).mean(axis=0).astype(np.float32)


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a separate ``.wav`` soundtrack as float32 mono at its own rate."""
    return decode_audio(path)


def write_audible_video(
    path: str | os.PathLike[str],
    frames: np.ndarray,
    fps: float,
    waveform: np.ndarray | None,
    sample_rate: int,
    *,
    crf: int = 18,
) -> Path:
    """Write frames and a soundtrack as an H.264 + AAC mp4, atomically.

    Args:
        path: output file (``.mp4``); written to a temporary name first, then renamed.
        frames: ``[t, h, w, 3]`` uint8 RGB. Odd sizes are encoded as yuv444p (yuv420p needs even).
        fps: frame rate.
        waveform: ``[samples]`` mono or ``[channels, samples]`` float in [-1, 1], or None for
            a video without audio.
        sample_rate: audio rate in Hz.
        crf: x264 quality (lower is better; 18 is visually lossless).

    Returns:
        The path written.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise MediaError(
            f"{path}: frames must be uint8 [t, h, w, 3], got {frames.dtype} {frames.shape}"
        )
    if len(frames) == 0:
        raise MediaError(f"{path}: no frames to write")
    height, width = frames.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp_name, mode="w", format="mp4") as container:
            rate = Fraction(fps).limit_denominator(1001)
            video = container.add_stream("libx264", rate=rate)
            video.width, video.height = width, height
            video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
            # x264's macroblock-tree rate control makes repeated encodes of the same frames in
            # one process differ; without it the same input always gives the same stream.
            video.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
            audio = None
            if waveform is not None:
                audio = container.add_stream("aac", rate=sample_rate)
                audio.bit_rate = 192_000
                planar = _planar(waveform)
                audio.layout = {1: "mono", 2: "stereo", 6: "5.1"}.get(len(planar), "mono")
                if audio.layout.nb_channels != len(planar):
                    planar = planar.mean(axis=0, keepdims=True)
            for image in frames:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(video.encode(frame))
            container.mux(video.encode())
            if audio is not None:
                _encode_audio(container, audio, planar, sample_rate)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _planar(waveform: np.ndarray) -> np.ndarray:
    data = np.asarray(waveform, dtype=np.float32)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise MediaError(f"waveform must be [samples] or [channels, samples], got {data.shape}")
    return np.ascontiguousarray(np.clip(data, -1.0, 1.0))


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    planar: np.ndarray,
    sample_rate: int,
) -> None:
    chunk = 1024
    layout = stream.layout.name
    for start in range(0, planar.shape[1], chunk):
        block = np.ascontiguousarray(planar[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(block, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
