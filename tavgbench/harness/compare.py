"""Paired comparison of two scoring runs on the same split: ``tavgbench compare A.json B.json``.

For every metric present in both ``results.json`` files the report gives A, B and the difference
B - A. Where both runs have per-clip values (CLIPSIM, AVHScore, in the per-clip table written
beside each results file, :func:`~tavgbench.harness.score.per_sample_path`), a paired bootstrap
over the clip ids common to both gives a 95% percentile interval of the mean paired difference
and a two-sided p-value for "no difference". Set metrics (FVD, KVD, FAD) compare two
distributions of whole sets, so they have no per-clip values to pair and get no p-value; their
bootstrap intervals are in the results files.

The p-value is the bootstrap test of a mean with the resampled statistic shifted to the null
(Efron & Tibshirani, An Introduction to the Bootstrap, 1993, sec. 16.4), in its two-sided form;
Berg-Kirkpatrick et al. (EMNLP 2012) use the one-sided form to compare systems. With paired
differences ``d`` and their mean ``m``, the bootstrap means ``m*_b`` (``b = 1..B``) are centred
on ``m`` to imitate the null distribution, and
``p = (1 + #{b : |m*_b - m| >= |m|}) / (B + 1)`` (the +1 of Davison & Hinkley, 1997, keeps p
above 0). Identical runs give ``p = 1``.

Two runs are only compared when they scored the same split (manifest sha256) and every common
metric ran the same extractor (name, version, weights and their sha256, protocol); otherwise
:func:`compare_results` refuses unless ``force=True``, which turns the refusals into warnings.
Set metrics computed against different reference clips only give a warning (the same clips may
lie in two folders).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tavgbench.errors import TavgbenchError
from tavgbench.harness.score import per_sample_path

SCHEMA = "tavgbench.results/1"
DEFAULT_N_BOOT = 10000
# Replicates drawn at once: bounds the index matrix to _CHUNK x n_clips int64 (24 MiB at 3,000
# clips) whatever n_boot is.
_CHUNK = 1000
# Fields of a metric's extractor description that change its numbers.
_EXTRACTOR_FIELDS = ("name", "version", "weights", "weights_sha256", "protocol")
# A per-clip table's column is taken as the per-clip values of its results.json metric only when
# its mean over the clips reproduces the metric's value this closely (relative).
_CONSISTENCY_RTOL = 1e-9
#: Metrics computed on whole sets of clips (no per-clip values).
SET_METRICS = ("fvd", "kvd", "fad")
SET_METRIC_NOTE = (
    "set metric: computed on the whole set of clips, so there are no per-clip values to pair "
    "and no p-value; compare the bootstrap intervals instead"
)


class ComparisonError(TavgbenchError):
    """Two results files cannot be compared (unreadable, or scored differently)."""


@dataclass(frozen=True)
class MetricComparison:
    """One metric of A against B.

    Attributes:
        name: metric name.
        higher_is_better: direction of improvement.
        a: A's value.
        b: B's value.
        difference: ``b - a``.
        a_ci95: A's interval from its results file.
        b_ci95: B's interval from its results file.
        n_paired: clips with per-clip values in both runs (0 for set metrics).
        mean_paired_difference: mean of ``b_i - a_i`` over those clips.
        ci95: 95% percentile bootstrap interval of that mean.
        p_value: two-sided paired-bootstrap p-value for "no difference".
        note: why there is no p-value, when there is none.
    """

    name: str
    higher_is_better: bool
    a: float
    b: float
    difference: float
    a_ci95: tuple[float, float]
    b_ci95: tuple[float, float]
    n_paired: int = 0
    mean_paired_difference: float | None = None
    ci95: tuple[float, float] | None = None
    p_value: float | None = None
    note: str = ""

    @property
    def better(self) -> str:
        """``"A"``, ``"B"`` or ``"="``, by value and the metric's direction."""
        if self.difference == 0:
            return "="
        return "B" if (self.difference > 0) == self.higher_is_better else "A"


@dataclass(frozen=True)
class ComparisonReport:
    """The comparison of two results files.

    Attributes:
        a_path: A's results.json.
        b_path: B's results.json.
        split: split name (A's).
        manifest_sha256: A's split manifest sha256.
        metrics: one entry per metric present in both, in A's order.
        only_in_a: metrics only A reports.
        only_in_b: metrics only B reports.
        warnings: mismatches accepted with ``force``, and notes such as test-model results.
        n_boot: bootstrap replicates.
        seed: bootstrap seed.
    """

    a_path: Path
    b_path: Path
    split: str
    manifest_sha256: str
    metrics: list[MetricComparison]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (paths as strings)."""
        document = asdict(self)
        document["a_path"], document["b_path"] = str(self.a_path), str(self.b_path)
        for entry, metric in zip(document["metrics"], self.metrics, strict=True):
            entry["better"] = metric.better
        return document


def _read_results(path: Path, label: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ComparisonError(f"{path}: results file {label} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ComparisonError(f"{path}: cannot read results file {label} ({error})") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        raise ComparisonError(
            f"{path}: not a tavgbench results file (schema {found!r}, expected {SCHEMA!r}); "
            "give the results.json that `tavgbench score` wrote"
        )
    return document


def _read_per_sample(path: Path) -> dict[str, dict[str, float]]:
    """``{metric: {clip id: value}}`` from a per-clip table; empty cells are skipped."""
    columns: dict[str, dict[str, float]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "id" not in reader.fieldnames:
                raise ComparisonError(f"{path}: per-sample file has no 'id' column")
            metrics = [name for name in reader.fieldnames if name != "id"]
            columns = {name: {} for name in metrics}
            for row in reader:
                for name in metrics:
                    cell = (row.get(name) or "").strip()
                    if cell:
                        columns[name][row["id"]] = float(cell)
    except ValueError as error:
        raise ComparisonError(
            f"{path}: per-sample file has a non-numeric value ({error})"
        ) from None
    except OSError as error:
        raise ComparisonError(f"{path}: cannot read per-sample file ({error})") from None
    return columns


def _per_clip(
    metric: str,
    entry: dict[str, Any],
    per_sample: dict[str, dict[str, float]] | None,
    csv_path: Path,
) -> tuple[dict[str, float] | None, str]:
    """One run's per-clip values of a metric, or None and why not."""
    values = (per_sample or {}).get(metric)
    if metric in SET_METRICS or (per_sample is not None and not values):
        return None, SET_METRIC_NOTE
    if per_sample is None:
        return None, f"no {csv_path.name} beside {csv_path.parent}, so no paired test"
    assert values is not None
    mean = math.fsum(values.values()) / len(values)
    value = float(entry["value"])
    # CLIPSIM's split score is the clip mean clamped at 0 (torchmetrics clip_score).
    clamped = value == 0.0 and mean < 0.0
    if len(values) != entry.get("n_generated") or not (
        clamped or math.isclose(mean, value, rel_tol=_CONSISTENCY_RTOL, abs_tol=1e-12)
    ):
        return None, (
            f"{csv_path} does not belong to its results file for {metric} ({len(values)} "
            f"clips, mean {mean:.6g}; results: {entry.get('n_generated')} clips, {value:.6g}); "
            "write both with one `tavgbench score` run"
        )
    return values, ""


def paired_bootstrap(
    differences: np.ndarray, *, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> tuple[float, tuple[float, float], float]:
    """Mean paired difference, its 95% percentile interval and the two-sided p-value.

    Args:
        differences: per-clip ``b_i - a_i`` ``[n]``, ``n >= 2``.
        n_boot: bootstrap replicates.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same numbers.

    Returns:
        ``(mean, (low, high), p)`` with ``p = (1 + #{|m*_b - m| >= |m|}) / (n_boot + 1)``.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"paired_bootstrap needs at least 2 paired differences, got {d.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    observed = float(d.mean())
    means = np.empty(n_boot)
    for start in range(0, n_boot, _CHUNK):
        size = min(_CHUNK, n_boot - start)
        means[start : start + size] = d[rng.integers(0, d.size, size=(size, d.size))].mean(axis=1)
    extreme = int(np.count_nonzero(np.abs(means - observed) >= abs(observed)))
    low, high = np.quantile(means, [0.025, 0.975])
    return observed, (float(low), float(high)), (1 + extreme) / (n_boot + 1)


def _mismatches(a: dict[str, Any], b: dict[str, Any], common: list[str]) -> list[str]:
    problems = []
    sha_a = a.get("split", {}).get("manifest_sha256")
    sha_b = b.get("split", {}).get("manifest_sha256")
    if sha_a != sha_b:
        problems.append(
            f"split manifests differ: A scored {a['split'].get('name')!r} (sha256 {sha_a}), "
            f"B scored {b['split'].get('name')!r} (sha256 {sha_b})"
        )
    for name in common:
        ext_a = a["metrics"][name].get("extractor", {})
        ext_b = b["metrics"][name].get("extractor", {})
        for key in _EXTRACTOR_FIELDS:
            if ext_a.get(key) != ext_b.get(key):
                what = "protocol" if key == "protocol" else f"extractor {key.replace('_', ' ')}"
                problems.append(
                    f"{name}: {what} differs (A: {ext_a.get(key)}, B: {ext_b.get(key)})"
                )
        direction_a = a["metrics"][name].get("higher_is_better")
        if direction_a != b["metrics"][name].get("higher_is_better"):
            problems.append(f"{name}: the runs disagree on whether higher is better")
    return problems


def _reference_warnings(a: dict[str, Any], b: dict[str, Any], common: list[str]) -> list[str]:
    """A note when the set metrics of A and B were computed against different real clips.

    Not a refusal: the same reference clips may lie in two folders.
    """
    if not any(name in SET_METRICS for name in common):
        return []
    ref_a, ref_b = a.get("reference") or {}, b.get("reference") or {}
    fields = [key for key in ("name", "path", "scored") if ref_a.get(key) != ref_b.get(key)]
    if not fields:
        return []
    shown = ", ".join(f"{key} {ref_a.get(key)!r} vs {ref_b.get(key)!r}" for key in fields)
    return [f"the set metrics used different reference clips ({shown})"]


def compare_results(
    a_path: str | Path,
    b_path: str | Path,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    force: bool = False,
) -> ComparisonReport:
    """Compare two ``results.json`` files (A, then B) metric by metric.

    Args:
        a_path: A's results.json; its per-clip table is read from beside it
            (:func:`~tavgbench.harness.score.per_sample_path`).
        b_path: B's results.json.
        n_boot: paired-bootstrap replicates.
        seed: bootstrap seed (each metric starts from it, so adding a metric does not change
            the others' numbers).
        force: compare even when the splits or a metric's extractor differ (the differences
            become warnings).

    Raises:
        ComparisonError: a file is unreadable or not a results file, or the runs differ in
            split or extractor and ``force`` is not set.
    """
    a_path, b_path = Path(a_path), Path(b_path)
    a, b = _read_results(a_path, "A"), _read_results(b_path, "B")
    metrics_a, metrics_b = a.get("metrics", {}), b.get("metrics", {})
    common = [name for name in metrics_a if name in metrics_b]
    warnings = []
    problems = _mismatches(a, b, common)
    if problems and not force:
        raise ComparisonError(
            f"{a_path} and {b_path} cannot be compared: " + "; ".join(problems) + ". Score both "
            "on the same split with the same extractors, or pass --force to compare anyway"
        )
    warnings += [f"compared despite: {problem}" for problem in problems]
    warnings += _reference_warnings(a, b, common)
    for label, document in (("A", a), ("B", b)):
        if document.get("comparable") is False:
            warnings.append(
                f"{label} ran extractors without registry weights (test models); its numbers "
                "are not comparable with published ones"
            )

    csv_a, csv_b = per_sample_path(a_path), per_sample_path(b_path)
    per_sample_a = _read_per_sample(csv_a) if csv_a.is_file() else None
    per_sample_b = _read_per_sample(csv_b) if csv_b.is_file() else None

    compared = []
    for name in common:
        entry_a, entry_b = metrics_a[name], metrics_b[name]
        value_a, value_b = float(entry_a["value"]), float(entry_b["value"])
        row: dict[str, Any] = {
            "name": name,
            "higher_is_better": bool(entry_a.get("higher_is_better")),
            "a": value_a,
            "b": value_b,
            "difference": value_b - value_a,
            "a_ci95": tuple(entry_a.get("ci95", (math.nan, math.nan))),
            "b_ci95": tuple(entry_b.get("ci95", (math.nan, math.nan))),
        }
        clips_a, why_a = _per_clip(name, entry_a, per_sample_a, csv_a)
        clips_b, why_b = _per_clip(name, entry_b, per_sample_b, csv_b)
        if clips_a is None or clips_b is None:
            row["note"] = why_a or why_b
            compared.append(MetricComparison(**row))
            continue
        ids = sorted(clips_a.keys() & clips_b.keys())
        row["n_paired"] = len(ids)
        if len(ids) < 2:
            row["note"] = f"{len(ids)} clips scored in both runs; a paired test needs 2 or more"
            compared.append(MetricComparison(**row))
            continue
        differences = np.array([clips_b[i] - clips_a[i] for i in ids])
        mean, interval, p_value = paired_bootstrap(differences, n_boot=n_boot, seed=seed)
        row |= {"mean_paired_difference": mean, "ci95": interval, "p_value": p_value}
        compared.append(MetricComparison(**row))

    return ComparisonReport(
        a_path=a_path,
        b_path=b_path,
        split=str(a.get("split", {}).get("name", "")),
        manifest_sha256=str(a.get("split", {}).get("manifest_sha256", "")),
        metrics=compared,
        only_in_a=[name for name in metrics_a if name not in metrics_b],
        only_in_b=[name for name in metrics_b if name not in metrics_a],
        warnings=warnings,
        n_boot=n_boot,
        seed=seed,
    )
