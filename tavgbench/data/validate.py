"""Submission discovery and validation, before any model runs.

A submission folder holds ``<id>.mp4`` with an audio stream, or ``<id>.mp4`` + ``<id>.wav``, for
every id of the split (subfolders allowed). Validation reports, per manifest id, every problem
found: missing, duplicate, unreadable or non-video files, no audio, silent or NaN audio, too few
frames, audio/video duration mismatch, sizes or rates outside sane bounds, symlinks leaving the
folder; and the extra files that match no id. One bad file never stops the check of the others.
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import av.error
import numpy as np

from tavgbench.data.splits import Split
from tavgbench.errors import MediaError, TavgbenchError
from tavgbench.media.io import MAX_FPS, MAX_SIDE, decode_audio, probe

VIDEO_SUFFIXES = (".mp4",)
AUDIO_SUFFIXES = (".wav",)
#: Files a generator or the harness writes beside the clips; never reported as extra.
IGNORED_NAMES = {"generation.json", "results.json", "per_sample.csv", "meta.yaml", "README.md"}
#: I3D, the network with the strictest need, requires at least 10 frames.
MIN_FRAMES = 10
MIN_SIDE = 16
MIN_FPS = 1.0
SILENCE_PEAK = 1e-4
#: Allowed |audio - video| duration difference; AAC pads up to one 1024-sample frame.
DURATION_TOLERANCE = 0.2


@dataclass
class ClipCheck:
    """The validation result of one manifest id."""

    id: str
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    video_path: str = ""
    audio_path: str = ""
    num_frames: int = 0
    fps: float = 0.0
    video_duration: float = 0.0
    audio_duration: float = 0.0


@dataclass
class SubmissionReport:
    """Everything validation found in a submission folder for one split."""

    folder: str
    split: str
    manifest_sha256: str
    clips: list[ClipCheck]
    extra_files: list[str]

    @property
    def valid(self) -> list[ClipCheck]:
        return [c for c in self.clips if c.ok]

    @property
    def invalid(self) -> list[ClipCheck]:
        return [c for c in self.clips if not c.ok]

    @property
    def found(self) -> int:
        """Manifest ids for which at least one file was found."""
        return sum(1 for c in self.clips if c.files)

    @property
    def all_ok(self) -> bool:
        return all(c.ok for c in self.clips)

    def summary(self) -> dict[str, int]:
        return {
            "expected": len(self.clips),
            "found": self.found,
            "valid": len(self.valid),
            "invalid": len(self.invalid),
            "extra_files": len(self.extra_files),
        }

    def to_json(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "split": self.split,
            "manifest_sha256": self.manifest_sha256,
            "summary": self.summary(),
            "clips": [
                {"id": c.id, "ok": c.ok, "problems": c.problems, "files": c.files}
                | {k: v for k, v in asdict(c).items() if k not in {"id", "ok", "problems", "files"}}
                for c in self.clips
            ],
            "extra_files": self.extra_files,
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path


def _discover(folder: Path) -> tuple[dict[str, list[Path]], list[str], dict[Path, str]]:
    """Media files by stem, extra files, and problems of files that must not be read."""
    by_stem: dict[str, list[Path]] = defaultdict(list)
    extra: list[str] = []
    refused: dict[Path, str] = {}
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name in IGNORED_NAMES:
                continue
            path = Path(dirpath) / name
            rel = str(path.relative_to(folder))
            if path.suffix.lower() not in VIDEO_SUFFIXES + AUDIO_SUFFIXES:
                extra.append(rel)
                continue
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    refused[path] = (
                        f"{rel}: symlink points outside the submission folder ({target})"
                    )
                elif not target.exists():
                    refused[path] = f"{rel}: broken symlink"
            by_stem[path.stem].append(path)
    return by_stem, extra, refused


def validate_submission(
    folder: str | Path,
    split: Split,
    *,
    min_frames: int = MIN_FRAMES,
    duration_tolerance: float = DURATION_TOLERANCE,
    workers: int | None = None,
) -> SubmissionReport:
    """Check a submission folder against a split, file by file.

    Args:
        folder: the submission folder.
        split: the split whose ids are expected.
        min_frames: fewest decodable frames a clip may have.
        duration_tolerance: largest allowed |audio - video| duration difference in seconds.
        workers: threads that probe files in parallel (default: CPU count).

    Returns:
        The :class:`SubmissionReport`; ``all_ok`` is true only when every id is valid.

    Raises:
        TavgbenchError: the folder itself does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TavgbenchError(f"{folder}: submission folder not found")
    by_stem, extra, refused = _discover(folder)
    expected = set(split.ids)
    for stem in sorted(set(by_stem) - expected):
        extra.extend(str(p.relative_to(folder)) for p in by_stem[stem])

    def check(clip_id: str) -> ClipCheck:
        return _check_clip(
            folder, clip_id, by_stem.get(clip_id, []), refused, min_frames, duration_tolerance
        )

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        clips = list(pool.map(check, split.ids))
    return SubmissionReport(
        folder=str(folder),
        split=split.name,
        manifest_sha256=split.sha256,
        clips=clips,
        extra_files=sorted(extra),
    )


def _check_clip(
    folder: Path,
    clip_id: str,
    paths: list[Path],
    refused: dict[Path, str],
    min_frames: int,
    duration_tolerance: float,
) -> ClipCheck:
    result = ClipCheck(id=clip_id, files=[str(p.relative_to(folder)) for p in paths])
    problems = result.problems
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    wavs = [p for p in paths if p.suffix.lower() in AUDIO_SUFFIXES]
    problems.extend(refused[p] for p in paths if p in refused)
    if not videos:
        problems.append(f"{clip_id}: missing ({clip_id}.mp4 not found)")
    if len(videos) > 1 or len(wavs) > 1:
        problems.append(f"{clip_id}: duplicate files: {', '.join(result.files)}")
    if problems:
        return result
    video = videos[0]
    result.video_path = str(video)
    rel = str(video.relative_to(folder))
    try:
        _check_video(video, rel, result, min_frames)
    except MediaError as exc:
        problems.append(_relative(str(exc), video, rel))
    audio = wavs[0] if wavs else video
    audio_rel = str(audio.relative_to(folder))
    if not problems or wavs:
        try:
            _check_audio(audio, audio_rel, result)
        except MediaError as exc:
            message = _relative(str(exc), audio, audio_rel)
            if not wavs and "has no audio stream" in message:
                message = f"{audio_rel}: no audio stream and no {clip_id}.wav"
            problems.append(message)
    if not problems and abs(result.audio_duration - result.video_duration) > duration_tolerance:
        problems.append(
            f"{clip_id}: audio lasts {result.audio_duration:.3f} s but video "
            f"{result.video_duration:.3f} s (tolerance {duration_tolerance} s)"
        )
    result.ok = not problems
    return result


def _relative(message: str, path: Path, rel: str) -> str:
    return message.replace(str(path), rel)


def _check_video(path: Path, rel: str, result: ClipCheck, min_frames: int) -> None:
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{rel}: has no video stream (not a video file)")
    if max(info.width, info.height) > MAX_SIDE:
        raise MediaError(f"{rel}: frame size {info.width}x{info.height} exceeds {MAX_SIDE} px")
    if min(info.width, info.height) < MIN_SIDE:
        raise MediaError(f"{rel}: frame size {info.width}x{info.height} is below {MIN_SIDE} px")
    if info.fps > MAX_FPS:
        raise MediaError(f"{rel}: frame rate {info.fps:g} fps exceeds {MAX_FPS:g}")
    if info.fps and info.fps < MIN_FPS:
        raise MediaError(f"{rel}: frame rate {info.fps:g} fps is below {MIN_FPS:g}")
    # Count decodable frames (no RGB conversion): catches truncated files that probe fine.
    count = 0
    first_time, last_time = math.inf, 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                count += 1
                if frame.time is not None:
                    first_time = min(first_time, float(frame.time))
                    last_time = max(last_time, float(frame.time))
    except av.error.FFmpegError as exc:
        raise MediaError(f"{rel}: video stream is corrupt after {count} frames ({exc})") from exc
    result.num_frames = count
    result.fps = info.fps
    if count == 0:
        raise MediaError(f"{rel}: zero-length video (no decodable frames)")
    if count < min_frames:
        raise MediaError(f"{rel}: too short: {count} frames, the metrics need {min_frames}")
    frame_period = 1.0 / info.fps if info.fps else 0.0
    span = last_time - first_time if math.isfinite(first_time) else 0.0
    result.video_duration = max(span + frame_period, count * frame_period)


def _check_audio(path: Path, rel: str, result: ClipCheck) -> None:
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{rel}: has no audio stream")
    waveform, rate = decode_audio(path)
    result.audio_path = str(path)
    result.audio_duration = len(waveform) / rate
    if not np.all(np.isfinite(waveform)):
        raise MediaError(f"{rel}: audio holds NaN or infinite samples")
    peak = float(np.max(np.abs(waveform))) if len(waveform) else 0.0
    if len(waveform) == 0 or math.isclose(result.audio_duration, 0.0):
        raise MediaError(f"{rel}: zero-length audio")
    if peak < SILENCE_PEAK:
        raise MediaError(f"{rel}: silent audio (peak {peak:.2e})")
