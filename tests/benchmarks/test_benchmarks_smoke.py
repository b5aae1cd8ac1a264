"""Smoke tests of the benchmark scripts in benchmarks/: each runs end to end on a tiny setting.

Speeds depend on the machine, so no speed is checked; the tests keep the scripts runnable
against the current library and check that they report what benchmarks/README.md promises.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from benchmarks import decode, extractors, gpu_extractors

ROWS = {"i3d", "clip", "vggish", "imagebind-vision", "imagebind-audio"}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread: test machines are often shared, and OpenMP threads competing for
    cores made these tiny runs several times slower (and costlier in CPU time)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check_row(row: dict[str, object]) -> None:
    for key in ("end_to_end_clips_per_s", "bare_clips_per_s", "end_to_end_over_bare"):
        value = row[key]
        assert isinstance(value, float) and value > 0, (key, value)
    assert row["peak_mib"] > 0


def test_decode_quick(capsys: pytest.CaptureFixture[str]) -> None:
    results = decode.main(["--clips", "2", "--quick"])
    out = capsys.readouterr().out
    for key in ("demo", "long", "long_frames", "long_audio"):
        assert results[key]["ours_clips_per_s"] > 0
    memory = results["memory"]["ours"]
    assert {"peak_mib_2", "peak_mib_8", "peak_growth_mib"} <= memory.keys()
    if results["decord"]:
        assert results["long"]["ratio"] > 0
        # decord and PyAV run the same FFmpeg decoder and RGB conversion on the same frame
        # indices; tolerance 1 grey level on average (observed: 0.0).
        assert results["frames_mean_abs_diff"] < 1.0
    else:
        assert decode.DECORD_HINT in out


def test_extractors_quick() -> None:
    results = extractors.main(["--clips", "1", "--threads", "1", "--quick"])
    assert set(results) == ROWS
    for row in results.values():
        _check_row(row)
    i3d = results["i3d"]
    assert i3d["ours_over_reference_speed"] > 0
    # Reference: plain_reference_i3d in the script (same network and weights, F.interpolate and
    # 2x/255-1 per clip). Tolerance 1e-4 absolute on the logits: only float32 summation order
    # may differ (observed: ~2e-8).
    assert i3d["max_abs_diff_vs_reference"] < 1e-4


def test_gpu_extractors_on_cpu_quick() -> None:
    results = gpu_extractors.main(["--device", "cpu", "--clips", "2", "--quick"])
    assert set(results["rows"]) == ROWS
    for row in results["rows"].values():
        _check_row(row)
    estimate = results["estimate_seconds"]
    assert estimate["total"] == pytest.approx(sum(v for k, v in estimate.items() if k != "total"))


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--device", "cpu", "--bf16"],
        ["--device", "cpu", "--clips", "0"],
    ],
)
def test_gpu_extractors_arguments(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_extractors.main(argv)
    assert exit_info.value.code == (0 if argv == ["--help"] else 2)


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_gpu_extractors_without_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        gpu_extractors.main([])
    assert "no CUDA device here" in capsys.readouterr().err


def test_tavdiffusion_quick() -> None:
    pytest.importorskip("diffusers", reason="needs the [baselines] extra")
    from benchmarks import tavdiffusion

    report = tavdiffusion.main(["--quick", "--sample-dtype", "bfloat16"])
    for key in ("train_step_s", "train_clips_per_s", "train_peak_gib", "sample_s"):
        assert report[key] > 0, key
    assert report["trainable_parameters"] > 0 and report["sample_steps"] == 2


def test_baselines_quick() -> None:
    pytest.importorskip("diffusers", reason="needs the [baselines] extra")
    from benchmarks import baselines

    results = baselines.main(["--repeat", "1"])
    assert set(results) == set(baselines.NAMES)
    for row in results.values():
        assert row["clips_per_s"] > 0 and row["peak_gib"] > 0
