"""Cut AudioSet-style segments from local source videos into TAVGBench clips.

The segment list is AudioSet's official CSV (``balanced_train_segments.csv`` and friends): three
header lines starting with ``#``, then rows ``YTID, start_seconds, end_seconds, "label,label"``.
Each segment's source is a video in the source folder whose file name, without extension, is the
YouTube id (``<ytid>.mp4``, ``.mkv``, ``.webm``, ...; subfolders are searched). The clip is written
as ``<ytid>_<start_ms>_<end_ms>.mp4`` (integer milliseconds, the key TAVGBench's captions use),
re-encoded to H.264 + AAC by :func:`tavgbench.media.write_audible_video`.

Exact duration: the clip holds ``round(duration * fps)`` frames at the source's frame rate, each
the source frame on screen at ``start + k / fps`` (right for variable frame rate too), and exactly
``round(duration * rate)`` audio samples at the source's rate and channel count, placed by their
timestamps (so AAC priming and gaps cannot shift the sound against the picture). The source is
read from a keyframe at or before the segment start (PyAV seek), not from its beginning.

A source may end slightly before the segment does (AudioSet end times are rounded); up to
``END_TOLERANCE`` seconds are filled by holding the last frame and with silence, beyond that the
segment is reported as failed. Existing clips are kept (the writer is atomic), so a killed run
resumes.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from tavgbench.errors import ManifestError, MediaError

#: Source file extensions searched, in order of preference when one id has several files.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv")
#: How far (seconds) a source may end before the segment's end and still give a clip.
END_TOLERANCE = 0.25

_YTID = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class Segment:
    """One row of an AudioSet segment CSV.

    Attributes:
        ytid: YouTube id (the source file's stem).
        start: segment start in seconds.
        end: segment end in seconds.
        labels: the row's label ids (``/m/09x0r`` ...).
        line: line number in the CSV, for messages.
    """

    ytid: str
    start: float
    end: float
    labels: tuple[str, ...] = ()
    line: int = 0

    @property
    def start_ms(self) -> int:
        return round(self.start * 1000)

    @property
    def end_ms(self) -> int:
        return round(self.end * 1000)

    @property
    def clip_id(self) -> str:
        """``<ytid>_<start_ms>_<end_ms>``: the clip's file stem and its caption key."""
        return f"{self.ytid}_{self.start_ms}_{self.end_ms}"


def parse_segments_csv(text: str, source: str = "segments.csv") -> list[Segment]:
    """Parse AudioSet's segment CSV (``#`` header lines, quoted comma-separated labels).

    Raises:
        ManifestError: a row has fewer than three fields, a bad id, or a bad time range.
    """
    segments = []
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    for row in rows:
        number = rows.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        where = f"{source}: line {number}"
        if len(row) < 3:
            raise ManifestError(f"{where}: expected 'YTID, start_seconds, end_seconds, \"labels\"'")
        ytid = row[0].strip()
        if not _YTID.match(ytid):
            raise ManifestError(
                f"{where}: YouTube id {ytid!r} has characters other than A-Za-z0-9_-"
            )
        try:
            start, end = float(row[1]), float(row[2])
        except ValueError as exc:
            raise ManifestError(
                f"{where}: start/end {row[1]!r}, {row[2]!r} are not numbers"
            ) from exc
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise ManifestError(f"{where}: need 0 <= start < end, got {start:g}, {end:g}")
        labels = tuple(label.strip() for label in ",".join(row[3:]).split(",") if label.strip())
        segments.append(Segment(ytid, start, end, labels, number))
    if not segments:
        raise ManifestError(f"{source}: no segments found")
    return segments


def load_segments(path: str | Path) -> list[Segment]:
    """Read and parse a segment CSV file."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: segment CSV not found")
    return parse_segments_csv(path.read_text(encoding="utf-8-sig"), str(path))


def index_sources(videos_dir: str | Path) -> dict[str, Path]:
    """Map each video file's stem to its path (recursive; preferred extension wins)."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise MediaError(f"{videos_dir}: source video folder not found")
    rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
    found: dict[str, Path] = {}
    for folder, _, names in os.walk(videos_dir):
        for name in names:
            stem, ext = os.path.splitext(name)
            ext = ext.lower()
            if ext not in rank or name.startswith("."):
                continue
            current = found.get(stem)
            if current is None or rank[ext] < rank[current.suffix.lower()]:
                found[stem] = Path(folder) / name
    return found


def _output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # Even sides keep yuv420p (the usual H.264 profile) available to the writer.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _rgb(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if (width, height) != (frame.width, frame.height):
        frame = frame.reformat(width=width, height=height)
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90.0) % 4
    # Display rotation is counter-clockwise, as is np.rot90 for positive k.
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def _seek(container: av.container.InputContainer, seconds: float) -> None:
    # Always seek, also to 0: the video pass has moved the demuxer past the audio packets.
    offset = (container.start_time or 0) + int(seconds * av.time_base)
    container.seek(max(offset, 0), backward=True, any_frame=False)


def _cut_video(
    container: av.container.InputContainer,
    start: float,
    end: float,
    max_side: int | None,
    where: str,
) -> tuple[np.ndarray, Fraction]:
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0:
        raise MediaError(f"{where}: video stream has no frame rate")
    rate = Fraction(rate).limit_denominator(1001)
    count = round((end - start) * rate)
    if count < 1:
        raise MediaError(f"{where}: segment is shorter than one frame at {float(rate):g} fps")
    targets = start + np.arange(count) / float(rate)
    origin = stream.start_time or 0
    time_base = stream.time_base or Fraction(1, 1)
    size = _output_size(stream.codec_context.width, stream.codec_context.height, max_side)
    _seek(container, start)
    picked: list[np.ndarray] = []
    previous: av.VideoFrame | None = None
    last_time = -math.inf
    for frame in container.decode(stream):
        t = (
            last_time + 1 / float(rate)
            if frame.pts is None
            else float((frame.pts - origin) * time_base)
        )
        last_time = t
        while len(picked) < count and t > targets[len(picked)] + 1e-6:
            picked.append(_rgb(previous if previous is not None else frame, size))
        if len(picked) == count:
            break
        previous = frame
    if len(picked) < count:
        if previous is None or last_time < end - END_TOLERANCE - 1 / float(rate):
            raise MediaError(
                f"{where}: video ends at {max(last_time, 0):.2f} s, before the segment end "
                f"{end:g} s"
            )
        while len(picked) < count:
            picked.append(_rgb(previous, size))
    return np.stack(picked), rate


def _planar_float(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray()
    if data.dtype.kind in "iu":
        data = data.astype(np.float64) / float(np.iinfo(data.dtype).max + 1)
    channels = len(frame.layout.channels)
    data = data.reshape(channels, -1) if frame.format.is_planar else data.reshape(-1, channels).T
    return data.astype(np.float32)


def _cut_audio(
    container: av.container.InputContainer, start: float, end: float, where: str
) -> tuple[np.ndarray, int]:
    stream = container.streams.audio[0]
    rate = int(stream.codec_context.sample_rate)
    if rate <= 0:
        raise MediaError(f"{where}: audio stream has no sample rate")
    channels = max(1, int(stream.codec_context.channels))
    total = round((end - start) * rate)
    out = np.zeros((channels, total), np.float32)
    origin = stream.start_time or 0
    time_base = stream.time_base or Fraction(1, rate)
    _seek(container, start)
    filled = 0
    position: int | None = None
    for frame in container.decode(stream):
        data = _planar_float(frame)
        if frame.pts is not None:
            position = round((float((frame.pts - origin) * time_base) - start) * rate)
        elif position is None:
            raise MediaError(f"{where}: audio frames carry no timestamps")
        first, last = max(position, 0), min(position + data.shape[1], total)
        if last > first:
            out[: data.shape[0], first:last] = data[:channels, first - position : last - position]
            filled = max(filled, last)
        position += data.shape[1]
        if position >= total:
            break
    if filled < total - END_TOLERANCE * rate:
        raise MediaError(
            f"{where}: audio ends at {start + filled / rate:.2f} s, "
            f"before the segment end {end:g} s"
        )
    return out, rate


def cut_segment(
    source: str | Path,
    start: float,
    end: float,
    out_path: str | Path,
    *,
    max_side: int | None = None,
    crf: int = 18,
) -> Path:
    """Cut ``[start, end)`` seconds of a source video into an H.264 + AAC clip.

    Args:
        source: the source video (with an audio stream).
        start: segment start in seconds (source time, first frame at 0).
        end: segment end in seconds.
        out_path: the clip to write (atomically).
        max_side: shrink frames so the longer side is at most this (None keeps the size).
        crf: x264 quality.

    Raises:
        MediaError: the source is unreadable, lacks video or audio, or ends before the segment.
    """
    from tavgbench.media import write_audible_video

    source = Path(source)
    where = f"{source} [{start:g}-{end:g} s]"
    try:
        container = av.open(str(source), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise MediaError(f"{source}: not a readable media file ({exc})") from exc
    try:
        with container:
            if not container.streams.video:
                raise MediaError(f"{source}: has no video stream")
            if not container.streams.audio:
                raise MediaError(f"{source}: has no audio stream (clips must be audible)")
            frames, rate = _cut_video(container, start, end, max_side, where)
            waveform, sample_rate = _cut_audio(container, start, end, where)
    except av.error.FFmpegError as exc:
        raise MediaError(f"{where}: cannot be decoded ({exc})") from exc
    return write_audible_video(out_path, frames, float(rate), waveform, sample_rate, crf=crf)


@dataclass
class PrepareReport:
    """What :func:`prepare_clips` did: clip ids written, kept, and failed with reasons."""

    written: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"written": self.written, "existing": self.existing, "failed": self.failed}


def _job(args: tuple[str, str, float, float, str, int | None]) -> tuple[str, str]:
    clip_id, source, start, end, out, max_side = args
    try:
        cut_segment(source, start, end, out, max_side=max_side)
    except (MediaError, OSError) as exc:
        return clip_id, str(exc)
    return clip_id, ""


def prepare_clips(
    segments: Sequence[Segment],
    videos_dir: str | Path,
    out_dir: str | Path,
    *,
    max_side: int | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Cut every segment whose source exists; report missing and broken sources per clip.

    Args:
        segments: from :func:`parse_segments_csv` (repeated clip ids are cut once).
        videos_dir: folder of ``<ytid>.<ext>`` sources.
        out_dir: folder for ``<clip_id>.mp4``; clips already there are kept.
        max_side: optional frame size limit (see :func:`cut_segment`).
        workers: processes cutting in parallel.
        progress: called as ``progress(done, total)`` after each segment.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = index_sources(videos_dir)
    report = PrepareReport()
    unique: dict[str, Segment] = {}
    for segment in segments:
        unique.setdefault(segment.clip_id, segment)
    jobs: list[tuple[str, str, float, float, str, int | None]] = []
    for clip_id, segment in unique.items():
        out = out_dir / f"{clip_id}.mp4"
        source = sources.get(segment.ytid)
        if out.is_file():
            report.existing.append(clip_id)
        elif source is None:
            report.failed[clip_id] = f"no source video {segment.ytid}.* in {videos_dir}"
        else:
            jobs.append((clip_id, str(source), segment.start, segment.end, str(out), max_side))
    total = len(unique)
    done = total - len(jobs)
    if progress is not None:
        progress(done, total)
    results: Iterable[tuple[str, str]]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(_progress(pool.map(_job, jobs), done, total, progress))
    else:
        results = _progress(map(_job, jobs), done, total, progress)
    for clip_id, problem in results:
        if problem:
            report.failed[clip_id] = problem
        else:
            report.written.append(clip_id)
    return report


def _progress(
    results: Iterable[tuple[str, str]],
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> Iterable[tuple[str, str]]:
    for result in results:
        done += 1
        if progress is not None:
            progress(done, total)
        yield result
