"""The leaderboard protocol: the committed file matches today's extractors; results are checked."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tavgbench.leaderboard.protocol import (
    LeaderboardError,
    check_results,
    current_metrics,
    default_protocol,
    load_protocol,
    pin_split,
    pin_weights,
    protocol_drift,
    refreshed_protocol,
    write_protocol,
)
from tavgbench.metrics import METRICS
from tests.leaderboard.helpers import COMMITTED_SUBMISSIONS


def test_committed_protocol_matches_todays_extractors() -> None:
    committed = load_protocol(COMMITTED_SUBMISSIONS / "PROTOCOL.json")
    drift = protocol_drift(committed)
    assert not drift, (
        "an extractor's protocol or version changed; if intended, run `tavgbench leaderboard "
        "protocol --update` and rebuild (older computed entries stop being accepted):\n"
        + "\n".join(drift)
    )
    assert list(committed["splits"]) == ["tavgbench-3k", "favdbench-test"]
    assert list(committed["metrics"]) == list(METRICS)


def test_current_metrics_describe_the_default_extractors() -> None:
    metrics = current_metrics()
    assert metrics["fvd"]["extractor"]["protocol"]["size"] == 224
    assert metrics["fvd"]["extractor"] == metrics["kvd"]["extractor"]
    assert metrics["fad"]["extractor"]["protocol"]["protocol"] == "audioldm"
    assert [m for m, spec in metrics.items() if spec["higher_is_better"]] == ["clipsim", "avhscore"]
    assert all("weights_sha256" not in spec["extractor"] for spec in metrics.values())


def test_drift_is_reported_and_update_keeps_unchanged_pins() -> None:
    document = pin_weights(default_protocol(), "i3d", "a" * 64)
    document = pin_weights(document, "vggish", "b" * 64)
    document["metrics"]["fvd"]["extractor"]["protocol"]["size"] = 193
    document["metrics"]["kvd"]["extractor"]["protocol"]["size"] = 193
    document["metrics"]["fad"]["extractor"]["version"] = "0"
    drift = protocol_drift(document)
    assert "fvd: extractor.protocol.size=224 (protocol file: 193)" in drift
    assert "fad: extractor.version='1' (protocol file: '0')" in drift
    refreshed = refreshed_protocol(document)
    assert protocol_drift(refreshed) == []
    # Changed extractors lose their weights pins; unchanged ones keep them.
    assert refreshed["metrics"]["fvd"]["weights_sha256"] == []
    assert refreshed["metrics"]["fad"]["weights_sha256"] == []
    assert refreshed["metrics"]["clipsim"]["weights_sha256"] == []


def test_pins_and_file_round_trip(tmp_path: Path) -> None:
    document = pin_split(default_protocol(), "favdbench-test", "c" * 64, 1000)
    assert document["splits"]["favdbench-test"]["manifest_sha256"] == "c" * 64
    with pytest.raises(LeaderboardError, match="has 999 clips; the leaderboard's has 1000"):
        pin_split(document, "favdbench-test", "c" * 64, 999)
    with pytest.raises(LeaderboardError, match="not a leaderboard split"):
        pin_split(document, "demo", "c" * 64, 24)
    with pytest.raises(LeaderboardError, match="no leaderboard metric uses"):
        pin_weights(document, "clap", "d" * 64)
    path = write_protocol(document, tmp_path / "PROTOCOL.json")
    assert load_protocol(path) == document


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no leaderboard protocol file"),
        ("{", "not valid JSON"),
        ('{"schema": "other"}', "not a tavgbench.protocol/1"),
    ],
)
def test_bad_protocol_files_are_refused(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "PROTOCOL.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(LeaderboardError, match=message):
        load_protocol(path)


def test_results_meeting_the_protocol_are_accepted(
    protocol: dict[str, Any], make_results: Callable[..., dict[str, Any]]
) -> None:
    assert check_results(make_results("tavgbench-3k"), protocol) == []
    assert check_results(make_results("favdbench-test"), protocol) == []


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(results: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = results
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value

    return change


REFUSALS = [
    ("other protocol", _set("metrics/fvd/extractor/protocol/size", 193),
     "fvd: extractor protocol.size=193 (leaderboard: 224)"),
    ("other extractor version", _set("metrics/avhscore/extractor/version", "2"),
     "avhscore: extractor version='2' (leaderboard: '1')"),
    ("other FAD protocol", _set("metrics/fad/extractor/protocol/protocol", "google"),
     "fad: extractor protocol.protocol='google' (leaderboard: 'audioldm')"),
    ("other clips", _set("split/manifest_sha256", "0" * 64),
     "scored on other clips or captions"),
    ("unknown split", _set("split/name", "demo"), "split 'demo' is not a leaderboard split"),
    ("test models", _set("comparable", False), "comparable is false"),
    ("missing metric", _set("metrics/clipsim", KeyError), "clipsim: missing"),
    ("partial", _set("submission/scored", 2990), "2990 of 3000 clips were scored"),
    ("other I3D weights", _set("metrics/fvd/extractor/weights_sha256", "9" * 64),
     "fvd: weights sha256 9999"),
    ("no weights", _set("metrics/clipsim/extractor/weights_sha256", ""), "no weights sha256"),
    ("not finite", _set("metrics/fad/value", float("nan")), "fad: value nan is not a finite"),
    ("bad interval", _set("metrics/kvd/ci95", [5.0, 1.0]), "low bound above its high bound"),
    ("direction", _set("metrics/fad/higher_is_better", True), "fad: higher_is_better is True"),
    ("schema", _set("schema", "other/1"), "schema is 'other/1'"),
]  # fmt: skip


@pytest.mark.parametrize("change, message", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_results_under_another_protocol_are_refused_with_the_reason(
    protocol: dict[str, Any],
    make_results: Callable[..., dict[str, Any]],
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    results = make_results("tavgbench-3k")
    change(results)
    problems = check_results(results, protocol)
    assert any(message in p for p in problems), problems


def test_unpinned_split_is_refused(
    protocol: dict[str, Any], make_results: Callable[..., dict[str, Any]]
) -> None:
    unpinned = copy.deepcopy(protocol)
    unpinned["splits"]["favdbench-test"]["manifest_sha256"] = None
    problems = check_results(make_results("favdbench-test"), unpinned)
    assert problems == [
        "the leaderboard has not pinned the manifest sha256 of favdbench-test yet; a maintainer "
        "records it with `tavgbench leaderboard protocol --pin-split favdbench-test`"
    ]
