"""`leaderboard build`: the CSV, Markdown and HTML outputs, and the committed ones being current."""

from __future__ import annotations

import csv
import html.parser
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tavgbench.leaderboard import build_leaderboard, load_entries
from tavgbench.leaderboard.build import OUTPUT_FILES, csv_columns, render_html
from tavgbench.leaderboard.entries import Entry, MetricValue, SystemMeta
from tests.leaderboard.helpers import COMMITTED_SUBMISSIONS

COMMITTED_LEADERBOARD = COMMITTED_SUBMISSIONS.parent / "leaderboard"


def test_committed_leaderboard_is_current(tmp_path: Path) -> None:
    build_leaderboard(COMMITTED_SUBMISSIONS, tmp_path)
    for name in OUTPUT_FILES:
        committed = COMMITTED_LEADERBOARD / name
        assert committed.is_file(), f"{committed} missing: run `tavgbench leaderboard build`"
        assert committed.read_text(encoding="utf-8") == (tmp_path / name).read_text(
            encoding="utf-8"
        ), f"{committed} is stale: run `tavgbench leaderboard build` and commit the result"


def test_build_is_deterministic(board: Path, tmp_path: Path) -> None:
    first = build_leaderboard(board, tmp_path / "a")
    second = build_leaderboard(board, tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_csv_has_one_row_per_system_and_split_with_intervals(
    board: Path, tmp_path: Path, protocol: dict[str, Any]
) -> None:
    build_leaderboard(board, tmp_path)
    with (tmp_path / "leaderboard.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == csv_columns(protocol)
    assert len(rows) == 17
    assert len({(r["split"], r["system"], r["source"]) for r in rows}) == 17
    # Computed rows first within a split, then reported; splits in protocol order.
    assert [r["split"] for r in rows] == ["tavgbench-3k"] * 9 + ["favdbench-test"] * 8
    assert [r["source"] for r in rows[:9]] == ["computed"] * 2 + ["reported"] * 7
    alpha = next(r for r in rows if r["system"] == "Alpha-AV" and r["split"] == "tavgbench-3k")
    assert float(alpha["fvd"]) == 450.0
    assert float(alpha["fvd_ci_low"]) == pytest.approx(427.5)  # 0.95 x 450, float rounding
    assert float(alpha["fvd_ci_high"]) == pytest.approx(472.5)
    assert alpha["n_generated"] == "3000" and alpha["tavgbench_version"] == "0.1.0"
    tav = next(r for r in rows if r["system"] == "TAVDiffusion" and r["split"] == "tavgbench-3k")
    assert (tav["fvd"], tav["fvd_ci_low"], tav["fvd_ci_high"]) == ("516.56", "", "")
    assert tav["citation"].startswith("Mao et al.")


def test_markdown_marks_reported_rows_and_directions(board: Path, tmp_path: Path) -> None:
    build_leaderboard(board, tmp_path)
    text = (tmp_path / "leaderboard.md").read_text()
    assert "| System | Source | FVD ↓ | KVD ↓ | CLIPSIM ↑ | FAD ↓ | AVHScore ↑ |" in text
    assert "| Alpha-AV | computed | 450.00 [427.50, 472.50] |" in text
    assert "| TAVDiffusion† | *reported* | 516.56 | 45.76 | 25.44 | 1.38 | 23.35 |" in text
    assert "protocol (clips, preprocessing, feature extractors, statistics) is unknown" in text


class _Resources(html.parser.HTMLParser):
    """Collects every attribute that would make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "srcset", "data") or (tag == "link" and name == "href"):
                self.fetched.append(f"{tag} {name}={value}")


def test_html_page_is_self_contained(board: Path, tmp_path: Path) -> None:
    build_leaderboard(board, tmp_path)
    page = (tmp_path / "index.html").read_text()
    parser = _Resources()
    parser.feed(page)
    assert parser.fetched == []
    assert "link" not in parser.tags and "iframe" not in parser.tags
    assert not re.search(r"@import|url\(\s*['\"]?(https?:)?//", page)
    assert parser.tags.count("table") == 3  # one per split, and the protocol table
    assert page.count('<tr class="reported"') == 14 and page.count('<tr class="computed"') == 3
    assert 'data-better="lower"' in page and 'data-better="higher"' in page
    assert 'id="show-reported"' in page


def _entry(system: str) -> Entry:
    meta = SystemMeta(system=system, source="computed", authors=("x",), date="2025-01-01")
    metrics = {m: MetricValue(1.0, 0.5, 1.5) for m in ("fvd", "kvd", "clipsim", "fad", "avhscore")}
    return Entry(slug="x", meta=meta, split="tavgbench-3k", metrics=metrics, path=Path("x"))


def test_names_cannot_break_out_of_the_page(protocol: dict[str, Any]) -> None:
    name = 'Evil</script><script>alert(1)</script><!-- "&'
    page = render_html([_entry(name)], protocol)
    assert "<script>alert(1)" not in page
    data = re.search(
        r'<script type="application/json" id="leaderboard-data">(.*?)</script>', page, re.S
    )
    assert data is not None
    assert json.loads(data.group(1))["rows"][0]["system"] == name


def test_committed_entries_build(tmp_path: Path) -> None:
    from tavgbench.leaderboard import load_protocol

    protocol = load_protocol(COMMITTED_SUBMISSIONS / "PROTOCOL.json")
    assert len(load_entries(COMMITTED_SUBMISSIONS, protocol)) == 14
    written = build_leaderboard(COMMITTED_SUBMISSIONS, tmp_path)
    assert [p.name for p in written] == list(OUTPUT_FILES)
