"""`compare_results` on synthetic results files written with the real results writer."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from tavgbench.harness.compare import (
    SET_METRIC_NOTE,
    ComparisonError,
    compare_results,
    paired_bootstrap,
)
from tavgbench.harness.score import SCHEMA, write_results

SHA = "a" * 64


def _extractor(name: str, **changes: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1",
        "weights": f"{name}-weights",
        "weights_sha256": "b" * 64,
        "protocol": {"num_frames": 16},
    } | changes


def _metric(value: float, n: int, higher: bool, extractor: str) -> dict[str, Any]:
    return {
        "value": value,
        "ci95": [value - 1.0, value + 1.0],
        "ci_method": "test",
        "n_generated": n,
        "n_reference": None,
        "higher_is_better": higher,
        "extractor": _extractor(extractor),
        "extras": {},
    }


def _document(clipsim: dict[str, float], fvd: float = 100.0, **changes: Any) -> dict[str, Any]:
    """A results document as score_submission returns it, with per-clip CLIPSIM values."""
    n = len(clipsim)
    document = {
        "schema": SCHEMA,
        "toolkit": {"name": "tavgbench", "version": "0", "git": None},
        "comparable": True,
        "split": {"name": "demo", "manifest_sha256": SHA, "size": n},
        "submission": {"path": "x", "found": n, "valid": n, "scored": n, "skipped": {}},
        "reference": None,
        "metrics": {
            "fvd": _metric(fvd, n, False, "i3d"),
            "clipsim": _metric(float(np.mean(list(clipsim.values()))), n, True, "clip"),
        },
        "runtime": {},
        "_per_sample": {"clipsim": clipsim},
    }
    return document | changes


def _write(folder: Path, document: dict[str, Any]) -> Path:
    results, _ = write_results(copy.deepcopy(document), folder / "results.json")
    return results


def _clips(values: np.ndarray) -> dict[str, float]:
    return {f"clip_{i:03d}": float(v) for i, v in enumerate(values)}


@pytest.fixture
def base_values() -> np.ndarray:
    return np.random.default_rng(0).normal(25.0, 3.0, size=60)


def test_identical_results_give_zero_difference_and_p_one(
    tmp_path: Path, base_values: np.ndarray
) -> None:
    document = _document(_clips(base_values))
    a, b = _write(tmp_path / "a", document), _write(tmp_path / "b", document)
    report = compare_results(a, b)
    by_name = {m.name: m for m in report.metrics}
    assert list(by_name) == ["fvd", "clipsim"]
    clipsim = by_name["clipsim"]
    # Exact: every paired difference is 0.0, so every bootstrap mean is 0.0.
    assert clipsim.difference == 0.0 and clipsim.mean_paired_difference == 0.0
    assert clipsim.p_value == 1.0 and clipsim.ci95 == (0.0, 0.0)
    assert clipsim.n_paired == 60 and clipsim.better == "="
    fvd = by_name["fvd"]
    assert fvd.difference == 0.0 and fvd.p_value is None and fvd.note == SET_METRIC_NOTE
    assert report.warnings == [] and report.manifest_sha256 == SHA


def test_clear_per_clip_shift_is_significant(tmp_path: Path, base_values: np.ndarray) -> None:
    noise = np.random.default_rng(1).normal(0.0, 0.5, size=base_values.size)
    a = _write(tmp_path / "a", _document(_clips(base_values)))
    b = _write(tmp_path / "b", _document(_clips(base_values + 2.0 + noise), fvd=80.0))
    report = compare_results(a, b)
    clipsim = next(m for m in report.metrics if m.name == "clipsim")
    assert clipsim.p_value is not None and clipsim.p_value < 0.01
    assert clipsim.ci95 is not None and 0.0 < clipsim.ci95[0] < 2.0 < clipsim.ci95[1]
    assert clipsim.mean_paired_difference == pytest.approx(clipsim.difference, abs=1e-9)
    assert clipsim.better == "B"
    fvd = next(m for m in report.metrics if m.name == "fvd")
    assert fvd.difference == -20.0 and fvd.better == "B" and fvd.p_value is None


def test_symmetric_differences_give_p_one(tmp_path: Path, base_values: np.ndarray) -> None:
    # Paired differences +1, -1, +1, ...: their mean is exactly 0, so no replicate is less
    # extreme than the observation and p = (1 + B) / (B + 1).
    signs = np.where(np.arange(base_values.size) % 2 == 0, 1.0, -1.0)
    a = _write(tmp_path / "a", _document(_clips(base_values)))
    b = _write(tmp_path / "b", _document(_clips(base_values + signs)))
    clipsim = next(m for m in compare_results(a, b).metrics if m.name == "clipsim")
    assert clipsim.p_value == 1.0


def test_p_value_and_interval_match_the_normal_approximation() -> None:
    # Reference: the two-sided one-sample t-test (scipy.stats.ttest_1samp) and the t interval
    # of the mean; for n = 400 the bootstrap distribution of a mean is close to normal.
    # Tolerance: 0.01 on p (Monte Carlo error sqrt(p(1-p)/B) ~ 0.002 at B = 10000, plus the
    # n vs n-1 and t vs normal differences) and 5% of the interval width on its ends.
    differences = np.random.default_rng(2).normal(0.1, 1.0, size=400)
    mean, (low, high), p_value = paired_bootstrap(differences, n_boot=10000, seed=0)
    test = stats.ttest_1samp(differences, 0.0)
    interval = test.confidence_interval(0.95)
    assert mean == pytest.approx(differences.mean(), abs=1e-12)
    assert 0.01 < test.pvalue < 0.2
    assert p_value == pytest.approx(test.pvalue, abs=0.01)
    width = interval.high - interval.low
    assert low == pytest.approx(interval.low, abs=0.05 * width)
    assert high == pytest.approx(interval.high, abs=0.05 * width)


def test_same_seed_same_numbers_and_chunking_covers_every_replicate() -> None:
    differences = np.random.default_rng(3).normal(0.5, 1.0, size=30)
    first = paired_bootstrap(differences, n_boot=2500, seed=7)
    assert first == paired_bootstrap(differences, n_boot=2500, seed=7)
    assert first != paired_bootstrap(differences, n_boot=2500, seed=8)
    # p is (1 + count) / (B + 1): a multiple of 1 / 2501 when all 2500 replicates are counted.
    assert math.isclose(first[2] * 2501, round(first[2] * 2501))


def test_mismatched_manifests_are_refused_unless_forced(
    tmp_path: Path, base_values: np.ndarray
) -> None:
    document = _document(_clips(base_values))
    other = copy.deepcopy(document)
    other["split"] = {"name": "demo", "manifest_sha256": "c" * 64, "size": 60}
    a, b = _write(tmp_path / "a", document), _write(tmp_path / "b", other)
    with pytest.raises(ComparisonError, match="split manifests differ.*--force"):
        compare_results(a, b)
    report = compare_results(a, b, force=True)
    assert len(report.warnings) == 1 and "split manifests differ" in report.warnings[0]
    assert next(m for m in report.metrics if m.name == "clipsim").p_value == 1.0


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("protocol", {"num_frames": 32}, "fvd: protocol differs"),
        ("version", "2", "fvd: extractor version differs"),
        ("weights_sha256", "d" * 64, "fvd: extractor weights sha256 differs"),
    ],
)
def test_mismatched_extractors_are_refused(
    tmp_path: Path, base_values: np.ndarray, field: str, value: Any, message: str
) -> None:
    document = _document(_clips(base_values))
    other = copy.deepcopy(document)
    other["metrics"]["fvd"]["extractor"][field] = value
    a, b = _write(tmp_path / "a", document), _write(tmp_path / "b", other)
    with pytest.raises(ComparisonError, match=message):
        compare_results(a, b)
    assert compare_results(a, b, force=True).warnings


def test_only_clips_scored_in_both_runs_are_paired(tmp_path: Path, base_values: np.ndarray) -> None:
    clips = _clips(base_values)
    fewer = {k: v + 1.0 for k, v in list(clips.items())[:50]}
    a = _write(tmp_path / "a", _document(clips))
    b_document = _document(fewer)
    b_document["metrics"]["kvd"] = _metric(0.5, 50, False, "i3d")
    b = _write(tmp_path / "b", b_document)
    report = compare_results(a, b)
    clipsim = next(m for m in report.metrics if m.name == "clipsim")
    assert clipsim.n_paired == 50
    # Over the common clips every difference is exactly +1 (up to float rounding of v + 1).
    assert clipsim.mean_paired_difference == pytest.approx(1.0, abs=1e-12)
    assert clipsim.p_value == pytest.approx(1 / 10001)
    assert report.only_in_b == ["kvd"] and report.only_in_a == []


def test_missing_per_sample_file_gives_no_p_value(tmp_path: Path, base_values: np.ndarray) -> None:
    a = _write(tmp_path / "a", _document(_clips(base_values)))
    b = _write(tmp_path / "b", _document(_clips(base_values + 1.0)))
    (tmp_path / "b" / "per_sample.csv").unlink()
    clipsim = next(m for m in compare_results(a, b).metrics if m.name == "clipsim")
    assert clipsim.p_value is None and "no per_sample.csv" in clipsim.note


def test_two_results_in_one_folder_keep_their_own_per_clip_tables(
    tmp_path: Path, base_values: np.ndarray
) -> None:
    a, _ = write_results(_document(_clips(base_values)), tmp_path / "a.json")
    b, _ = write_results(_document(_clips(base_values + 1.0)), tmp_path / "b.json")
    clipsim = next(m for m in compare_results(a, b).metrics if m.name == "clipsim")
    assert clipsim.n_paired == 60
    assert clipsim.mean_paired_difference == pytest.approx(1.0, abs=1e-12)


def test_per_sample_file_of_another_run_is_not_paired(
    tmp_path: Path, base_values: np.ndarray
) -> None:
    a = _write(tmp_path / "a", _document(_clips(base_values)))
    b = _write(tmp_path / "b", _document(_clips(base_values + 1.0)))
    stale = _write(tmp_path / "stale", _document(_clips(base_values + 5.0)))
    (tmp_path / "b" / "per_sample.csv").write_text(stale.with_name("per_sample.csv").read_text())
    clipsim = next(m for m in compare_results(a, b).metrics if m.name == "clipsim")
    assert clipsim.p_value is None and "does not belong" in clipsim.note


def test_different_reference_clips_are_flagged(tmp_path: Path, base_values: np.ndarray) -> None:
    document = _document(_clips(base_values))
    other = copy.deepcopy(document)
    document["reference"] = {"path": "/data/real", "name": None, "valid": 60, "scored": 60}
    other["reference"] = {"path": "/data/real", "name": None, "valid": 60, "scored": 55}
    a, b = _write(tmp_path / "a", document), _write(tmp_path / "b", other)
    (warning,) = compare_results(a, b).warnings
    assert "different reference clips (scored 60 vs 55)" in warning


def test_not_a_results_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"schema": "something/2"}')
    with pytest.raises(ComparisonError, match="not a tavgbench results file"):
        compare_results(bogus, bogus)
    with pytest.raises(ComparisonError, match="not found"):
        compare_results(tmp_path / "missing.json", bogus)


def test_report_serialises(tmp_path: Path, base_values: np.ndarray) -> None:
    import json

    document = _document(_clips(base_values), comparable=False)
    a, b = _write(tmp_path / "a", document), _write(tmp_path / "b", document)
    report = compare_results(a, b, n_boot=100)
    loaded = json.loads(json.dumps(report.to_dict()))
    assert loaded["n_boot"] == 100 and loaded["metrics"][1]["better"] == "="
    assert any("test models" in w for w in report.warnings)
