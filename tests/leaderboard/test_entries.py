"""Leaderboard entries: meta.yaml checks, `leaderboard add`, and the committed paper rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tavgbench.leaderboard import LeaderboardError, add_entry, load_entries, load_meta
from tavgbench.leaderboard.entries import parse_meta, slugify
from tavgbench.leaderboard.protocol import load_protocol
from tests.conftest import shared_path
from tests.leaderboard.helpers import COMMITTED_SUBMISSIONS, meta_fields

PAPER_CITATION = (
    'Mao et al., "TAVGBench: Benchmarking Text to Audible-Video Generation", ACM MM 2024'
)
PAPER_SPLITS = {"tavgbench": "tavgbench-3k", "favdbench": "favdbench-test"}
METRIC_COLUMNS = ("fvd", "kvd", "clipsim", "fad", "avhscore")


def test_slugify() -> None:
    assert slugify("AnimateDiff+AudioLDM") == "animatediff-audioldm"
    assert slugify("TAVDiffusion (no cross-attention, no EAS)") == (
        "tavdiffusion-no-cross-attention-no-eas"
    )
    with pytest.raises(LeaderboardError, match="no letters or digits"):
        slugify("+++")


def test_valid_meta_is_parsed() -> None:
    meta = parse_meta(meta_fields(), "meta.yaml")
    assert meta.system == "VideoSound-XL" and meta.source == "computed"
    assert meta.authors == ("A. Author", "B. Author")
    assert meta.generation["resolution"] == "256x256" and meta.generation["guidance"] == 7.5
    assert meta.parameters == 1_500_000_000


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"system": ""}, "'system' is required"),
        ({"source": "estimated"}, "'source' must be 'computed' or 'reported'"),
        ({"authors": []}, "'authors' must be a name or a list"),
        ({"date": "January 2025"}, "'date' must be an ISO date"),
        ({"code": "github.com/x"}, "'code' must be an http"),
        ({"parameters": -3}, "'parameters' must be a positive integer or null"),
        ({"generation": {"frames": 16}}, "generation lacks fps, resolution"),
        ({"license": "MIT"}, "unknown fields \\['license'\\]"),
        ({"source": "reported"}, "'citation' is required"),
    ],
)
def test_bad_meta_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(LeaderboardError, match=message):
        parse_meta(meta_fields(**changes), "meta.yaml")


def test_computed_meta_states_its_output_format() -> None:
    generation = dict(meta_fields()["generation"], fps=None)
    with pytest.raises(LeaderboardError, match="generation.fps cannot be null"):
        parse_meta(meta_fields(generation=generation), "meta.yaml")
    generation = dict(meta_fields()["generation"], resolution="256 by 256")
    with pytest.raises(LeaderboardError, match="resolution must be 'HEIGHTxWIDTH'"):
        parse_meta(meta_fields(generation=generation), "meta.yaml")


def test_yaml_dates_and_single_author(tmp_path: Path) -> None:
    path = tmp_path / "meta.yaml"
    text = yaml.safe_dump(meta_fields(authors="Solo Author"), sort_keys=False)
    path.write_text(text.replace("'2025-01-31'", "2025-01-31"))
    meta = load_meta(path)
    assert meta.date == "2025-01-31" and meta.authors == ("Solo Author",)


def test_add_copies_a_valid_entry(
    tmp_path: Path,
    protocol: dict[str, Any],
    make_results: Callable[..., dict[str, Any]],
    write_entry: Callable[..., tuple[Path, Path]],
) -> None:
    submissions = tmp_path / "submissions"
    results, meta = write_entry(make_results("favdbench-test"), meta_fields())
    target = add_entry(results, meta, submissions, protocol)
    assert target == submissions / "videosound-xl" / "favdbench-test"
    assert json.loads((target / "results.json").read_text()) == json.loads(results.read_text())
    assert (target / "per_sample.csv").read_text() == (
        results.parent / "per_sample.csv"
    ).read_text()
    assert load_meta(submissions / "videosound-xl" / "meta.yaml") == load_meta(meta)
    (entry,) = load_entries(submissions, protocol)
    assert (entry.split, entry.slug, entry.reported) == ("favdbench-test", "videosound-xl", False)
    assert entry.metrics["fvd"].value == 400.0
    assert entry.metrics["fvd"].ci_low == pytest.approx(380.0)  # 0.95 x 400, float rounding
    assert entry.n_generated == 1000 and entry.toolkit_version == "0.1.0"


def test_add_refuses_another_protocol_and_says_why(
    tmp_path: Path,
    protocol: dict[str, Any],
    make_results: Callable[..., dict[str, Any]],
    write_entry: Callable[..., tuple[Path, Path]],
) -> None:
    results = make_results("tavgbench-3k")
    results["metrics"]["fvd"]["extractor"]["protocol"]["protocol"] = "videogpt"
    results["split"]["manifest_sha256"] = "0" * 64
    results_path, meta = write_entry(results, meta_fields())
    with pytest.raises(LeaderboardError) as caught:
        add_entry(results_path, meta, tmp_path / "submissions", protocol)
    message = str(caught.value)
    assert "refused" in message
    assert "fvd: extractor protocol.protocol='videogpt' (leaderboard: 'tf')" in message
    assert "scored on other clips or captions" in message
    assert not (tmp_path / "submissions").exists()


def test_add_refuses_reported_meta_and_existing_entries(
    tmp_path: Path,
    protocol: dict[str, Any],
    make_results: Callable[..., dict[str, Any]],
    write_entry: Callable[..., tuple[Path, Path]],
) -> None:
    submissions = tmp_path / "submissions"
    results, meta = write_entry(
        make_results(), meta_fields(source="reported", citation="Someone, 2024")
    )
    with pytest.raises(LeaderboardError, match="takes numbers computed with tavgbench"):
        add_entry(results, meta, submissions, protocol)

    results, meta = write_entry(make_results(), meta_fields())
    add_entry(results, meta, submissions, protocol)
    with pytest.raises(LeaderboardError, match="already has results on tavgbench-3k"):
        add_entry(results, meta, submissions, protocol)
    results, other_meta = write_entry(make_results("favdbench-test"), meta_fields(notes="new"))
    with pytest.raises(LeaderboardError, match="exists and differs"):
        add_entry(results, other_meta, submissions, protocol)
    add_entry(results, other_meta, submissions, protocol, replace=True)
    assert load_meta(submissions / "videosound-xl" / "meta.yaml").notes == "new"
    assert len(load_entries(submissions, protocol)) == 2


def test_entries_that_no_longer_meet_the_protocol_stop_the_build(
    board: Path, protocol: dict[str, Any]
) -> None:
    assert len(load_entries(board, protocol)) == 14 + 3
    protocol["splits"]["tavgbench-3k"]["manifest_sha256"] = "1" * 64
    with pytest.raises(LeaderboardError, match=r"alpha-av/tavgbench-3k/results.json does not"):
        load_entries(board, protocol)


def test_misnamed_or_mixed_entry_folders_are_refused(
    submissions: Path, protocol: dict[str, Any]
) -> None:
    folder = submissions / "tavdiffusion-reported"
    folder.rename(submissions / "tavdiffusion")
    with pytest.raises(LeaderboardError, match="must be named tavdiffusion-reported"):
        load_entries(submissions, protocol)
    (submissions / "tavdiffusion").rename(folder)
    (folder / "tavgbench-3k" / "results.json").write_text("{}")
    with pytest.raises(LeaderboardError, match="a reported entry holds reported.json files only"):
        load_entries(submissions, protocol)


# --- the committed entries -------------------------------------------------------------------


def _committed() -> list[Any]:
    protocol = load_protocol(COMMITTED_SUBMISSIONS / "PROTOCOL.json")
    return load_entries(COMMITTED_SUBMISSIONS, protocol)


def test_committed_paper_rows_are_reported_entries_citing_the_paper() -> None:
    entries = _committed()
    assert len(entries) == 14  # 7 systems (TAVDiffusion once), 2 splits
    assert {e.split for e in entries} == {"tavgbench-3k", "favdbench-test"}
    for entry in entries:
        assert entry.reported and entry.meta.citation == PAPER_CITATION
        assert entry.meta.paper == {
            "title": "TAVGBench: Benchmarking Text to Audible-Video Generation",
            "url": "https://arxiv.org/abs/2404.14381",
        }
        assert all(m.ci_low is None and m.ci_high is None for m in entry.metrics.values())
    tavdiffusion = [e for e in entries if e.meta.system == "TAVDiffusion"]
    assert [e.meta.paper_tables for e in tavdiffusion] == [(2, 3), (2, 3)]


def _paper_rows(path: Path) -> list[dict[str, str]]:
    """The paper's rows; a system name may hold an unquoted comma, so fields count from the end."""
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    columns = header.split(",")
    rows = []
    for line in lines:
        fields = line.split(",")
        tail = len(columns) - 2
        rows.append({
            "table": fields[0],
            "system": ",".join(fields[1:-tail]),
            **dict(zip(columns[2:], fields[-tail:], strict=True)),
        })  # fmt: skip
    return rows


def test_committed_numbers_equal_the_papers_tables() -> None:
    """Exact equality with ../shared/data/tavgbench-paper/reported_results.csv (Tables 2, 3)."""
    rows = _paper_rows(shared_path("data/tavgbench-paper/reported_results.csv"))
    assert len(rows) == 16
    entries = {(e.meta.system, e.split): e for e in _committed()}
    for row in rows:
        entry = entries[(row["system"], PAPER_SPLITS[row["split"]])]
        for metric in METRIC_COLUMNS:
            assert entry.metrics[metric].value == float(row[metric]), (row["system"], metric)
        assert int(row["table"]) in entry.meta.paper_tables
        for column, key in (("cross_attention", "cross_attention"), ("eas_loss", "eas_loss")):
            if row[column]:
                assert entry.meta.variant[key] == (row[column] == "yes"), (row["system"], key)
    # Every committed entry comes from the paper; duplicated rows (Table 2 and 3) are one entry.
    assert set(entries) == {(r["system"], PAPER_SPLITS[r["split"]]) for r in rows}
