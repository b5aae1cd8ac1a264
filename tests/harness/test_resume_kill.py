"""A scoring run killed part-way (SIGKILL, or Ctrl-C's SIGINT) resumes to the same numbers.

A real process is killed once some features are in the cache; the rerun must compute only
what is missing and give results identical to an uninterrupted run: every metric's value and
interval, the per-clip table and the cached arrays. The scoring script is the one of
test_distributed (small random-weight extractors, seeded; one process here).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tavgbench.data.demo import write_demo
from tests.factories import clip_snapshot
from tests.harness.test_distributed import (
    REPO,
    assert_same_arrays,
    assert_same_numbers,
    cached_arrays,
    read_run,
    run_checked,
    script_args,
    script_env,
    write_score_script,
)

#: Features are written per batch of 2 clips and per extractor, so a run leaves its first
#: entries after one batch; killing then leaves most of the 8 clips to the rerun.
BATCH = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo(root, n_clips=4, seed=1)
    return root


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip_snapshot(tmp_path_factory.mktemp("clip"), full=False, legacy_eos=True, seed=0)


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_score_script(tmp_path_factory.mktemp("script"))


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, demo: Path, clip_dir: Path, script: Path
) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    run_checked([sys.executable, *script_args(script, demo, clip_dir, run, batch_size=BATCH)])
    return run


def _entries(run: Path) -> list[Path]:
    return sorted((run / "cache").rglob("*.safetensors"))


def _kill_part_way(command: list[str], run: Path, sig: signal.Signals) -> int:
    """Start ``command`` in its own process group, send ``sig`` to the group once the cache
    holds a feature entry, and return the exit status once every process of the group (the
    run and any decode workers) has exited."""
    process = subprocess.Popen(
        command,
        env=script_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not _entries(run):
            if process.poll() is not None:
                raise AssertionError(
                    f"the run ended before writing features:\n{process.stderr.read().decode()}"
                )
            assert time.monotonic() < deadline, "no feature entry after 240 s"
            time.sleep(0.02)
        os.killpg(process.pid, sig)
        status = process.wait(timeout=120)
        assert _group_gone(process.pid), "a process of the killed run is still running"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    return status


def _group_gone(pgid: int, timeout: float = 30) -> bool:
    """Whether every process of the group (the run and its decode workers) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _resume_and_check(
    command: list[str], run: Path, uninterrupted: Path, before: dict[str, dict[str, np.ndarray]]
) -> None:
    total = len(_entries(uninterrupted))
    assert 0 < len(before) < total, f"kill left {len(before)} of {total} entries"
    assert not (run / "out" / "results.json").exists()
    run_checked(command)
    document, rows = read_run(run)
    reference, reference_rows = read_run(uninterrupted)
    assert_same_numbers(document, reference)
    assert rows == reference_rows
    after = cached_arrays(run)
    assert_same_arrays(after, cached_arrays(uninterrupted))
    # What the killed run had written is kept as it was.
    assert_same_arrays(before, {key: after[key] for key in before})


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_results(
    tmp_path: Path, demo: Path, clip_dir: Path, script: Path, uninterrupted: Path
) -> None:
    command = [sys.executable, *script_args(script, demo, clip_dir, tmp_path, batch_size=BATCH)]
    status = _kill_part_way(command, tmp_path, signal.SIGKILL)
    assert status == -signal.SIGKILL
    _resume_and_check(command, tmp_path, uninterrupted, cached_arrays(tmp_path))


@pytest.mark.slow
def test_sigint_with_decode_workers_then_rerun_gives_identical_results(
    tmp_path: Path, demo: Path, clip_dir: Path, script: Path, uninterrupted: Path
) -> None:
    # Ctrl-C in a terminal sends SIGINT to the whole foreground group: the run and its
    # DataLoader decode worker.
    args = script_args(script, demo, clip_dir, tmp_path, batch_size=BATCH, workers=1)
    command = [sys.executable, *args]
    status = _kill_part_way(command, tmp_path, signal.SIGINT)
    # KeyboardInterrupt unwinds the run; Python then exits through SIGINT itself.
    assert status in (-signal.SIGINT, 1, 130)
    _resume_and_check(command, tmp_path, uninterrupted, cached_arrays(tmp_path))
