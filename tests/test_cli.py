"""The command line: help, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tavgbench.cli import main


def test_help_lists_every_command_group(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("score", "validate", "reference", "weights", "split", "baseline",
                    "leaderboard", "demo"):  # fmt: skip
        assert command in out


def test_error_is_one_red_line_without_traceback(tmp_path: Path) -> None:
    env_home = {"TAVGBENCH_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "tavgbench", "validate", str(tmp_path), "--split", "demo"],
        capture_output=True, text=True, env={**env_home, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert "split 'demo' is not installed" in done.stderr
    assert "`tavgbench demo`" in done.stderr


def test_validate_writes_json_and_exit_code(
    tmp_path: Path, make_clip, capsys: pytest.CaptureFixture[str]
) -> None:
    sub = tmp_path / "sub"
    make_clip("a.mp4", folder=sub)
    (tmp_path / "m.csv").write_text("id,caption\na,first\nb,second\n")
    code = main(["validate", str(sub), "--split", str(tmp_path / "m.csv"),
                 "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["ok"] for c in report["clips"]] == [True, False]
    assert "1/2 clips valid" in capsys.readouterr().out
    (tmp_path / "m1.csv").write_text("id,caption\na,first\n")
    assert main(["validate", str(sub), "--split", str(tmp_path / "m1.csv")]) == 0


def test_split_make_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("TAVGBENCH_HOME", str(tmp_path / "home"))
    lines = [f"abcdefghij{i % 10}_{i * 1000}_{i * 1000 + 10000}.mp4 caption {i}" for i in range(40)]
    (tmp_path / "release_captions.txt").write_text("\n".join(lines) + "\n")
    assert main(["split", "make", "tavgbench-3k", "--captions",
                 str(tmp_path / "release_captions.txt"), "--n", "25"]) == 0  # fmt: skip
    assert main(["split", "show", "tavgbench-3k"]) == 0
    assert "tavgbench-3k: 25 clips" in capsys.readouterr().out


def test_group_without_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard"]) == 2
    assert "build" in capsys.readouterr().out
    assert main(["validate"]) == 2  # missing argument: usage error, no traceback


def test_weights_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("TAVGBENCH_HOME", str(tmp_path))
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "i3d-kinetics-400" in out and "imagebind-huge" in out
