"""The coarse-to-fine captioning pipeline of TAVGBench, on a folder of clips.

Per clip: ``num_frames`` frames sampled evenly (centres of equal segments, as
:func:`tavgbench.media.frame_times` defines) are captioned by an image captioner (BLIP-2), the
soundtrack by an audio captioner, and a chat LLM rephrases the frame captions into one visual
description, rephrases the audio caption, and merges both into one caption (prompts in
:mod:`tavgbench.annotate.prompts`).

Output: one JSON object per line, appended and flushed as each clip finishes::

    {"id", "caption" (merged), "frame_captions" [...], "audio_caption", "visual_description",
     "audio_description", "duration", "models": {"frames", "audio", "llm"}, "prompt_version"}

plus ``<out>.meta.json`` with the prompt texts, models and LLM parameters of the run. A rerun
skips ids already in the output (a torn last line from a killed run is dropped and redone) and
refuses to append under different prompts or models. A clip that fails (unreadable file,
captioner or LLM error) is reported and the others go on; it is retried on the next run.

Captioning runs in batches on the main thread while the LLM requests of finished batches run in
a thread pool of ``concurrency`` workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tavgbench.annotate import prompts
from tavgbench.annotate.llm import ChatClient
from tavgbench.errors import TavgbenchError


class AnnotateError(TavgbenchError):
    """The annotation run cannot start or continue (bad folder, mismatched resume)."""


class FrameCaptioner(Protocol):
    """Captions single images (``[h, w, 3]`` uint8 RGB), one string each."""

    model_id: str

    def caption_frames(self, frames: Sequence[np.ndarray]) -> list[str]: ...


class AudioCaptioner(Protocol):
    """Captions mono float32 waveforms at ``sample_rate``, one string each."""

    model_id: str
    sample_rate: int

    def caption_audio(self, waveforms: Sequence[np.ndarray]) -> list[str]: ...


@dataclass(frozen=True)
class Descriptions:
    """The LLM step's three outputs for one clip."""

    visual: str
    audio: str
    caption: str


def describe(frame_captions: Sequence[str], audio_caption: str, llm: ChatClient) -> Descriptions:
    """Rephrase the frame captions and the audio caption, then merge them (three LLM calls)."""
    visual = llm.complete(prompts.visual_messages(frame_captions))
    audio = llm.complete(prompts.audio_messages(audio_caption))
    return Descriptions(visual, audio, llm.complete(prompts.merge_messages(visual, audio)))


@dataclass
class AnnotateReport:
    """What a run did: ids written, ids already done, and failures with their reasons."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def find_clips(clips_dir: str | Path) -> dict[str, Path]:
    """``<id>.mp4`` files under a folder (recursive), by id, in id order."""
    clips_dir = Path(clips_dir)
    if not clips_dir.is_dir():
        raise AnnotateError(f"{clips_dir}: clip folder not found")
    found: dict[str, Path] = {}
    for path in sorted(clips_dir.rglob("*.mp4")):
        if path.name.startswith("."):
            continue
        if path.stem in found:
            raise AnnotateError(f"{clips_dir}: id {path.stem!r} found twice ({found[path.stem]})")
        found[path.stem] = path
    if not found:
        raise AnnotateError(f"{clips_dir}: no .mp4 clips found")
    return dict(sorted(found.items()))


def read_done_ids(out_path: str | Path) -> set[str]:
    """Ids with a complete line in an existing output file; a torn last line is cut off."""
    out_path = Path(out_path)
    if not out_path.is_file():
        return set()
    done: set[str] = set()
    good_bytes = 0
    with out_path.open("rb") as handle:
        for raw in handle:
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                break
            if not raw.endswith(b"\n") or not isinstance(row, dict) or "id" not in row:
                break
            done.add(str(row["id"]))
            good_bytes += len(raw)
    if good_bytes != out_path.stat().st_size:
        # A killed run can leave half a line; drop it so appended lines start on their own.
        with out_path.open("r+b") as handle:
            handle.truncate(good_bytes)
    return done


def _run_meta(frames: FrameCaptioner, audio: AudioCaptioner, llm: ChatClient, k: int) -> dict:
    return {
        "prompts": prompts.prompt_texts(),
        "prompts_sha256": prompts.prompts_sha256(),
        "models": {"frames": frames.model_id, "audio": audio.model_id, "llm": llm.model},
        "llm_params": llm.params,
        "num_frames": k,
        "audio_sample_rate": audio.sample_rate,
    }


def _check_meta(meta_path: Path, meta: dict[str, Any], out_path: Path, resuming: bool) -> None:
    if resuming and meta_path.is_file():
        previous = json.loads(meta_path.read_text(encoding="utf-8"))
        if previous != meta:
            changed = sorted(k for k in meta if previous.get(k) != meta[k])
            raise AnnotateError(
                f"{out_path}: was written with different {', '.join(changed)}; "
                "write to a new output file (or delete this one) instead of mixing runs"
            )
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _decode(path: Path, num_frames: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    from tavgbench.media import decode_audio, decode_frames, probe

    frames = decode_frames(path, num_frames=num_frames)
    waveform, _ = decode_audio(path, sample_rate=sample_rate)
    return frames, waveform, probe(path).duration


def annotate_clips(
    clips_dir: str | Path,
    out_path: str | Path,
    *,
    frame_captioner: FrameCaptioner,
    audio_captioner: AudioCaptioner,
    llm: ChatClient,
    num_frames: int = 8,
    batch_size: int = 4,
    concurrency: int = 4,
    ids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AnnotateReport:
    """Caption every clip of a folder into a JSONL file (see the module docstring).

    Args:
        clips_dir: folder of ``<id>.mp4`` clips with audio.
        out_path: the JSONL output, appended to when it exists.
        frame_captioner: e.g. :class:`tavgbench.annotate.captioners.Blip2FrameCaptioner`.
        audio_captioner: e.g. :class:`tavgbench.annotate.captioners.Qwen2AudioCaptioner`.
        llm: the chat client (with its cache and retries).
        num_frames: frames captioned per clip.
        batch_size: clips decoded and captioned together.
        concurrency: LLM requests in flight at once.
        ids: only these ids of the folder (default: all).
        progress: called as ``progress(done, total)`` after each clip ends (written or failed).
    """
    if num_frames < 1 or batch_size < 1 or concurrency < 1:
        raise AnnotateError("num_frames, batch_size and concurrency must be >= 1")
    out_path = Path(out_path)
    clips = find_clips(clips_dir)
    if ids is not None:
        missing = [i for i in ids if i not in clips]
        if missing:
            raise AnnotateError(f"{clips_dir}: no clip for ids {missing[:5]}")
        clips = {i: clips[i] for i in ids}
    done = read_done_ids(out_path)
    meta = _run_meta(frame_captioner, audio_captioner, llm, num_frames)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _check_meta(out_path.with_name(out_path.name + ".meta.json"), meta, out_path, bool(done))
    report = AnnotateReport(skipped=[i for i in clips if i in done])
    todo = [i for i in clips if i not in done]
    total = len(todo)
    finished = 0

    def tick() -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(finished, total)

    if progress is not None:
        progress(0, total)
    pending: dict[Future[Descriptions], dict[str, Any]] = {}
    with out_path.open("a", encoding="utf-8") as out, ThreadPoolExecutor(concurrency) as pool:

        def collect(block: bool) -> None:
            if not pending:
                return
            ready, _ = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for future in ready:
                row = pending.pop(future)
                try:
                    text = future.result()
                except TavgbenchError as exc:
                    report.failed[row["id"]] = str(exc)
                else:
                    row.update(
                        visual_description=text.visual,
                        audio_description=text.audio,
                        caption=text.caption,
                    )
                    out.write(json.dumps(_ordered(row), ensure_ascii=False) + "\n")
                    out.flush()
                    report.written.append(row["id"])
                tick()

        for start in range(0, total, batch_size):
            rows = _caption_batch(
                todo[start : start + batch_size],
                clips,
                frame_captioner,
                audio_captioner,
                num_frames,
                meta["models"],
                report,
                tick,
            )
            for row in rows:
                future = pool.submit(describe, row["frame_captions"], row["audio_caption"], llm)
                pending[future] = row
            collect(block=False)
            # Keep captioning ahead of the LLM, but not without bound.
            while len(pending) > 4 * concurrency + batch_size:
                collect(block=True)
        while pending:
            collect(block=True)
        os.fsync(out.fileno())
    return report


def _caption_batch(
    batch: Sequence[str],
    clips: dict[str, Path],
    frame_captioner: FrameCaptioner,
    audio_captioner: AudioCaptioner,
    num_frames: int,
    models: dict[str, str],
    report: AnnotateReport,
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    decoded: list[tuple[str, np.ndarray, np.ndarray, float]] = []
    for clip_id in batch:
        try:
            frames, waveform, duration = _decode(
                clips[clip_id], num_frames, audio_captioner.sample_rate
            )
        except TavgbenchError as exc:
            report.failed[clip_id] = str(exc)
            tick()
            continue
        decoded.append((clip_id, frames, waveform, duration))
    if not decoded:
        return []
    try:
        frame_captions = frame_captioner.caption_frames(
            [frame for _, frames, _, _ in decoded for frame in frames]
        )
        audio_captions = audio_captioner.caption_audio([wave for _, _, wave, _ in decoded])
    except (TavgbenchError, RuntimeError, ValueError) as exc:
        # A captioner failure (e.g. out of memory) fails the batch, not the run.
        for clip_id, *_ in decoded:
            report.failed[clip_id] = f"captioning failed: {exc}"
            tick()
        return []
    rows = []
    offset = 0
    for (clip_id, frames, _, duration), audio_caption in zip(decoded, audio_captions, strict=True):
        rows.append(
            {
                "id": clip_id,
                "frame_captions": frame_captions[offset : offset + len(frames)],
                "audio_caption": audio_caption,
                "duration": round(duration, 3),
                "models": models,
                "prompt_version": prompts.PROMPT_VERSION,
            }
        )
        offset += len(frames)
    return rows


_ORDER = (
    "id",
    "caption",
    "frame_captions",
    "audio_caption",
    "visual_description",
    "audio_description",
    "duration",
    "models",
    "prompt_version",
)


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in _ORDER}
