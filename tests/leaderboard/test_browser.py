"""The leaderboard page in a real headless Chromium: loads cleanly, sorts, hides, plots.

Needs Debian's ``chromium`` (``apt-get install -y chromium``; another binary can be named with
``TAVGBENCH_CHROMIUM``) and Playwright's Python package (``pip install playwright``; its own
browser download is not used). Skips with the reason when either is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tavgbench.leaderboard import build_leaderboard
from tests.leaderboard.helpers import COMMITTED_SUBMISSIONS

CHROMIUM = Path(os.environ.get("TAVGBENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
    )
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class _Page:
    """A page opened on a built leaderboard, recording console errors and every request."""

    def __init__(self, browser: Any, index: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1300, "height": 900})
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(index.as_uri())
        self.page.wait_for_load_state("load")

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def column(self, split: str, metric: str) -> list[float]:
        """The visible values of a metric column, top to bottom."""
        return self.page.eval_on_selector_all(
            f"#table-{split} tbody tr",
            """(rows, metric) => {
                const heads = Array.from(rows[0].closest("table").tHead.rows[0].cells);
                const index = heads.findIndex((th) => th.dataset.metric === metric);
                return rows.filter((r) => r.offsetParent !== null)
                    .map((r) => parseFloat(r.cells[index].dataset.value));
            }""",
            metric,
        )

    def systems(self, split: str) -> list[str]:
        return self.page.eval_on_selector_all(
            f"#table-{split} tbody tr",
            "rows => rows.filter((r) => r.offsetParent !== null).map((r) => r.dataset.system)",
        )

    def click_header(self, split: str, metric: str) -> None:
        self.page.click(f'#table-{split} th[data-metric="{metric}"] button')


def test_page_sorts_hides_reported_rows_and_plots(
    browser: Any, board: Path, tmp_path: Path
) -> None:
    build_leaderboard(board, tmp_path / "site")
    index = tmp_path / "site" / "index.html"
    view = _Page(browser, index)
    page = view.page

    assert view.errors == []
    assert view.requests == [index.as_uri()]  # nothing else fetched: no CDN, no fonts

    split = "tavgbench-3k"
    assert len(view.systems(split)) == 9
    view.click_header(split, "fvd")  # lower is better: best (lowest) first
    fvd = view.column(split, "fvd")
    assert fvd == sorted(fvd) and fvd[0] == 450.0
    assert page.get_attribute(f'#table-{split} th[data-metric="fvd"]', "aria-sort") == "ascending"
    view.click_header(split, "fvd")
    assert view.column(split, "fvd") == sorted(fvd, reverse=True)
    view.click_header(split, "avhscore")  # higher is better: best (highest) first
    avh = view.column(split, "avhscore")
    assert avh == sorted(avh, reverse=True) and avh[0] == 26.0
    assert view.systems(split)[0] == "Beta-AV"

    # Five bar charts and the FVD-AVHScore scatter per split; whiskers only on computed rows.
    assert page.locator(f"#plots-{split} svg").count() == 6
    assert page.locator(f"#plots-{split} svg g.bar").count() == 5 * 9
    assert page.locator(f"#plots-{split} svg g.bar.computed line").count() == 5 * 2 * 3
    assert page.locator(f"#plots-{split} svg g.bar.reported line").count() == 0
    assert page.locator(f"#plots-{split} svg g.point").count() == 9

    page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000

    page.uncheck("#show-reported")
    assert view.systems(split) == ["Beta-AV", "Alpha-AV"]
    assert view.systems("favdbench-test") == ["Alpha-AV"]
    assert page.locator(f"#plots-{split} svg g.bar").count() == 5 * 2
    assert page.locator(f"#plots-{split} svg g.point").count() == 2
    page.screenshot(path=str(tmp_path / "leaderboard-computed-only.png"), full_page=True)
    page.check("#show-reported")
    assert len(view.systems(split)) == 9
    assert view.errors == []
    page.close()


def test_committed_page_loads_without_errors(browser: Any, tmp_path: Path) -> None:
    index = tmp_path / "index.html"
    build_leaderboard(COMMITTED_SUBMISSIONS, tmp_path)
    view = _Page(browser, index)
    assert view.errors == []
    assert view.page.locator("#plots-favdbench-test svg").count() == 6
    view.page.screenshot(path=str(tmp_path / "committed.png"), full_page=True)
    view.page.close()
