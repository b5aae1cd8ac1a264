"""Scoring a submission end to end: validate, extract through the cache, compute, write results.

``results.json`` follows the versioned schema ``tavgbench.results/1`` (see the README): toolkit
version and git hash, split name and manifest sha256, submission counts (found, valid, scored,
skipped with reasons), and per metric its value, 95% bootstrap interval, sample counts, protocol,
extractor version and weights sha256. Per-clip values go beside it in ``per_sample.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tavgbench import __version__, config
from tavgbench.data.splits import Split
from tavgbench.data.validate import SubmissionReport, validate_submission
from tavgbench.errors import TavgbenchError
from tavgbench.extractors.base import Extractor
from tavgbench.harness.cache import FeatureCache
from tavgbench.harness.distributed import merge_across_ranks
from tavgbench.harness.extract import (
    ClipSource,
    clip_sources,
    extract_to_cache,
    load_cached,
    load_extractors,
    text_embeddings,
)
from tavgbench.harness.reference import Reference, resolve_reference
from tavgbench.metrics import METRICS
from tavgbench.metrics.base import MetricResult

SCHEMA = "tavgbench.results/1"
DEFAULT_METRICS = ("fvd", "kvd", "clipsim", "fad", "avhscore")


@dataclass
class ScoreOptions:
    """Everything that shapes one scoring run besides its inputs."""

    metrics: Sequence[str] = DEFAULT_METRICS
    device: str = "cpu"
    cache_dir: Path | None = None
    allow_partial: bool = False
    batch_size: int = 8
    num_workers: int = 0
    seed: int = 0
    fad_infinity: bool = False
    extractor_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def _git_hash() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def _valid_sources(report: SubmissionReport) -> list[ClipSource]:
    return clip_sources([(c.id, c.video_path, c.audio_path) for c in report.valid])


def _check_scorable(report: SubmissionReport, what: str, allow_partial: bool) -> None:
    if report.all_ok:
        return
    summary = report.summary()
    if not allow_partial:
        raise TavgbenchError(
            f"{report.folder}: {summary['invalid']} of {summary['expected']} {what} clips are "
            f"invalid (run `tavgbench validate {report.folder} --split {report.split}` for the "
            "list); fix them, or score the valid ones with --allow-partial"
        )
    if not report.valid:
        raise TavgbenchError(f"{report.folder}: no valid {what} clips to score")


def score_submission(
    submission: str | Path,
    split: Split,
    reference: str | Path | Reference | None,
    options: ScoreOptions,
    *,
    extractors: Mapping[str, Extractor] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_clips: Callable[[str, int], Callable[[int], None]] | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Score a submission folder on a split; returns the ``results.json`` document.

    Args:
        submission: folder of ``<id>.mp4`` (+ ``<id>.wav``) files.
        split: the split.
        reference: what FVD, KVD and FAD compare against: a folder of real clips in the same
            layout, a :class:`~tavgbench.harness.reference.Reference`, the name of a stored
            reference, or a reference file (see
            :func:`~tavgbench.harness.reference.resolve_reference`).
        options: metrics, device, cache and bootstrap settings.
        extractors: prebuilt extractors by name; the default loads real checkpoints from the
            weights cache. Extractors without a weights sha256 (random test models) make the
            results ``comparable: false``.
        on_stage: called with a short description as each stage starts.
        on_clips: called with a label and a clip count as an extraction starts; returns the
            function that is called with the number of clips finished after each batch
            (progress bars with clips/s and ETA).
        rank: this process's rank under torch.distributed (only rank 0 computes metrics).
        world_size: number of ranks.
    """
    unknown = [m for m in options.metrics if m not in METRICS]
    if unknown:
        raise TavgbenchError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    specs = [METRICS[m] for m in options.metrics]
    timings: dict[str, float] = {}
    stage = on_stage or (lambda _: None)

    started = time.perf_counter()
    stage("validating the submission")
    report = validate_submission(submission, split)
    _check_scorable(report, "submission", options.allow_partial)
    sources = _valid_sources(report)
    ref_sources: list[ClipSource] = []
    ref_report = None
    stored: Reference | None = None
    if any(s.needs_reference for s in specs):
        if reference is None:
            raise TavgbenchError(
                "FVD, KVD and FAD compare against real clips: give --reference FOLDER, the "
                "name of a reference (`tavgbench reference list`) or a reference file"
            )
        resolved = resolve_reference(reference)
        if isinstance(resolved, Reference):
            resolved.check_split(split)
            stored = resolved
        else:
            stage("validating the reference clips")
            ref_report = validate_submission(resolved, split)
            _check_scorable(ref_report, "reference", True)
            ref_sources = _valid_sources(ref_report)
    timings["validate"] = time.perf_counter() - started

    started = time.perf_counter()
    names = sorted({s.extractor for s in specs})
    loaded = load_extractors(
        names,
        device=options.device,
        extractor_options=options.extractor_options,
        prebuilt=extractors,
        stage=stage,
    )
    if stored is not None:
        # Refuse stale reference features before any clip is extracted.
        for spec in specs:
            if spec.needs_reference:
                stored.check(loaded[spec.extractor].describe())
    timings["load"] = time.perf_counter() - started

    cache = FeatureCache(options.cache_dir or config.home() / "features")
    started = time.perf_counter()
    failed: dict[str, str] = {}
    for label, clips, needed in (
        ("submission", sources, names),
        ("reference", ref_sources, [s.extractor for s in specs if s.needs_reference]),
    ):
        if not clips:
            continue
        stage(f"extracting {label} features ({len(clips)} clips)")
        extraction = extract_to_cache(
            clips,
            [loaded[n] for n in sorted(set(needed))],
            cache,
            batch_size=options.batch_size,
            num_workers=options.num_workers,
            rank=rank,
            world_size=world_size,
            on_progress=on_clips(label, len(clips)) if on_clips else None,
        )
        # Every rank learns every rank's failures, so all refuse together or all go on, and
        # rank 0 knows which features will never reach the cache.
        label_failed = merge_across_ranks(extraction.failed, world_size)
        if label_failed:
            if not options.allow_partial:
                first = next(iter(label_failed.values()))
                raise TavgbenchError(
                    f"{len(label_failed)} {label} clips failed to decode (first: {first}); "
                    "use --allow-partial to score the rest"
                )
            failed |= {f"{label}:{k}": v for k, v in label_failed.items()}
    timings["extract"] = time.perf_counter() - started
    if world_size > 1:
        torch.distributed.barrier()
    if rank != 0:
        return {}

    failed_ids = {k.split(":", 1)[1] for k in failed if k.startswith("submission:")}
    sources = [s for s in sources if s.id not in failed_ids]
    ref_failed = {k.split(":", 1)[1] for k in failed if k.startswith("reference:")}
    ref_sources = [s for s in ref_sources if s.id not in ref_failed]
    started = time.perf_counter()
    stage("computing metrics")
    results: dict[str, MetricResult] = {}
    ids = [s.id for s in sources]
    ref_ids = stored.clip_ids if stored is not None else [s.id for s in ref_sources]
    captions = {e.id: e.caption for e in split.entries}
    for spec in specs:
        extractor = loaded[spec.extractor]
        generated = load_cached(sources, extractor, cache, spec.reduce)
        kwargs: dict[str, Any] = {"seed": options.seed}
        if spec.needs_captions:
            kwargs["text_embeddings"] = text_embeddings(
                extractor, {i: captions[i] for i in ids}, cache
            )
        if spec.name == "fad":
            kwargs["infinity"] = options.fad_infinity
        ref_features = None
        if spec.needs_reference:
            ref_features = (
                stored.features(extractor.describe())
                if stored is not None
                else load_cached(ref_sources, extractor, cache)
            )
        results[spec.name] = spec.compute(generated, ref_features, ids, ref_ids, **kwargs)
    timings["metrics"] = time.perf_counter() - started

    skipped = {c.id: "; ".join(c.problems) for c in report.invalid}
    skipped |= {k.split(":", 1)[1]: v for k, v in failed.items() if k.startswith("submission:")}
    comparable = all(e.weights_sha256 for e in loaded.values())
    reference_section: dict[str, Any] | None = None
    if stored is not None:
        reference_section = {"path": str(stored.source.resolve()), "name": stored.name,
                             "valid": stored.manifest["valid"], "scored": len(ref_ids)}  # fmt: skip
    elif ref_report is not None:
        reference_section = {"path": str(Path(str(reference)).resolve()), "name": None,
                             "valid": len(ref_report.valid), "scored": len(ref_ids)}  # fmt: skip
    return {
        "schema": SCHEMA,
        "toolkit": {"name": "tavgbench", "version": __version__, "git": _git_hash()},
        "comparable": comparable,
        "split": {"name": split.name, "manifest_sha256": split.sha256, "size": len(split)},
        "submission": {
            "path": str(Path(submission).resolve()),
            "found": report.found,
            "valid": len(report.valid),
            "scored": len(ids),
            "skipped": skipped,
        },
        "reference": reference_section,
        "metrics": {
            name: {
                "value": r.value,
                "ci95": [r.ci_low, r.ci_high],
                "ci_method": r.ci_method,
                "n_generated": r.n_generated,
                "n_reference": r.n_reference,
                "higher_is_better": r.higher_is_better,
                "extractor": loaded[METRICS[name].extractor].describe(),
                "extras": r.extras,
            }
            for name, r in results.items()
        },
        "runtime": {
            "device": options.device,
            "dtype": "float32",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "world_size": world_size,
            "threads": torch.get_num_threads(),
            "seconds": timings,
        },
        "_per_sample": {name: r.per_sample for name, r in results.items() if r.per_sample},
    }


def per_sample_path(results: str | Path) -> Path:
    """The per-clip table written beside a results file.

    ``results.json`` gets ``per_sample.csv``; any other name ``<stem>.per_sample.csv``, so several
    results in one folder keep their own tables.
    """
    results = Path(results)
    if results.name == "results.json":
        return results.with_name("per_sample.csv")
    return results.with_name(f"{results.stem}.per_sample.csv")


def write_results(document: dict[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` and its per-clip table (:func:`per_sample_path`), atomically."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    per_sample: dict[str, dict[str, float]] = document.pop("_per_sample", {})
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    csv_path = per_sample_path(out)
    ids = sorted({i for values in per_sample.values() for i in values})
    columns = sorted(per_sample)
    tmp_csv = csv_path.with_name(f".{csv_path.name}.{os.getpid()}.tmp")
    with tmp_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *columns])
        for clip_id in ids:
            writer.writerow([clip_id, *(per_sample[m].get(clip_id, "") for m in columns)])
    os.replace(tmp_csv, csv_path)
    return out, csv_path
