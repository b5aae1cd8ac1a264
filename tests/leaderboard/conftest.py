"""Leaderboard fixtures: a pinned protocol, results.json documents and meta.yaml files made to
measure, and a submissions folder holding the committed reported entries plus computed ones."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tavgbench.leaderboard.protocol import load_protocol, pin_split, pin_weights, write_protocol
from tests.leaderboard.helpers import (
    COMMITTED_SUBMISSIONS,
    I3D_SHA,
    SPLIT_SHA,
    WEIGHTS_SHA,
    meta_fields,
)


@pytest.fixture
def protocol() -> dict[str, Any]:
    """The committed protocol, both splits and the I3D weights pinned to made-up hashes."""
    document = load_protocol(COMMITTED_SUBMISSIONS / "PROTOCOL.json")
    for name, sha in SPLIT_SHA.items():
        document = pin_split(document, name, sha, document["splits"][name]["size"])
    return pin_weights(document, "i3d", I3D_SHA)


@pytest.fixture
def make_results(protocol: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """``make_results(split, values={metric: value})``: a results.json the protocol accepts.

    Each metric gets the protocol's extractor description, the first pinned weights sha256
    (or a made-up one), a full count of generated clips and an interval of +-5% around its value.
    """

    def _make(split: str = "tavgbench-3k", values: dict[str, float] | None = None) -> dict:
        size = protocol["splits"][split]["size"]
        values = values or {
            "fvd": 400.0,
            "kvd": 30.0,
            "clipsim": 26.0,
            "fad": 1.2,
            "avhscore": 25.0,
        }
        metrics = {}
        for name, spec in protocol["metrics"].items():
            extractor = copy.deepcopy(spec["extractor"])
            extractor["weights_sha256"] = (spec["weights_sha256"] or [WEIGHTS_SHA])[0]
            value = values[name]
            metrics[name] = {
                "value": value,
                "ci95": [value * 0.95, value * 1.05],
                "ci_method": "percentile bootstrap",
                "n_generated": size,
                "n_reference": size,
                "higher_is_better": spec["higher_is_better"],
                "extractor": extractor,
                "extras": {},
            }
        return {
            "schema": "tavgbench.results/1",
            "toolkit": {"name": "tavgbench", "version": "0.1.0", "git": None},
            "comparable": True,
            "split": {"name": split, "manifest_sha256": SPLIT_SHA[split], "size": size},
            "submission": {
                "path": "/outputs",
                "found": size,
                "valid": size,
                "scored": size,
                "skipped": {},
            },
            "reference": {"path": "/real", "name": None, "valid": size, "scored": size},
            "metrics": metrics,
            "runtime": {},
        }

    return _make


@pytest.fixture
def write_entry(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """``write_entry(results, meta)``: write both to a fresh folder; returns their paths."""
    counter = iter(range(1000))

    def _write(results: dict[str, Any], meta: dict[str, Any]) -> tuple[Path, Path]:
        folder = tmp_path / f"incoming{next(counter)}"
        folder.mkdir()
        results_path = folder / "results.json"
        results_path.write_text(json.dumps(results))
        (folder / "per_sample.csv").write_text("id,avhscore,clipsim\nclip0,20.0,25.0\n")
        meta_path = folder / "meta.yaml"
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
        return results_path, meta_path

    return _write


@pytest.fixture
def submissions(tmp_path: Path, protocol: dict[str, Any]) -> Path:
    """A submissions folder: the pinned protocol and the committed reported entries."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    write_protocol(protocol, folder / "PROTOCOL.json")
    for entry in COMMITTED_SUBMISSIONS.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, folder / entry.name)
    return folder


@pytest.fixture
def board(
    submissions: Path,
    protocol: dict[str, Any],
    make_results: Callable[..., dict[str, Any]],
    write_entry: Callable[..., tuple[Path, Path]],
) -> Path:
    """``submissions`` plus two computed systems on TAVGBench and one on FAVDBench."""
    from tavgbench.leaderboard import add_entry

    computed = [
        ("Alpha-AV", "tavgbench-3k", {"fvd": 450.0, "kvd": 40.0, "clipsim": 24.0, "fad": 1.9,
                                      "avhscore": 21.0}),
        ("Beta-AV", "tavgbench-3k", {"fvd": 620.0, "kvd": 35.0, "clipsim": 27.5, "fad": 1.1,
                                     "avhscore": 26.0}),
        ("Alpha-AV", "favdbench-test", {"fvd": 700.0, "kvd": 90.0, "clipsim": 23.0, "fad": 2.0,
                                        "avhscore": 24.0}),
    ]  # fmt: skip
    for system, split, values in computed:
        results, meta = write_entry(make_results(split, values), meta_fields(system))
        add_entry(results, meta, submissions, protocol)
    return submissions
