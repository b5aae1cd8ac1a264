"""The leaderboard: entries under ``submissions/``, checked against a committed protocol, built
into ``leaderboard/`` (CSV, Markdown, a static HTML page); and the golden-value regression check.

- :func:`add_entry` validates a ``results.json`` and its ``meta.yaml`` and copies them in;
- :func:`build_leaderboard` writes ``leaderboard.csv``, ``leaderboard.md`` and ``index.html``;
- :mod:`tavgbench.leaderboard.protocol` defines and checks ``submissions/PROTOCOL.json``;
- :mod:`tavgbench.leaderboard.golden` computes and compares ``tests/golden/demo.json``.
"""

from tavgbench.leaderboard.build import build_leaderboard
from tavgbench.leaderboard.entries import Entry, SystemMeta, add_entry, load_entries, load_meta
from tavgbench.leaderboard.protocol import (
    LeaderboardError,
    check_results,
    load_protocol,
    protocol_path,
)

__all__ = [
    "Entry",
    "LeaderboardError",
    "SystemMeta",
    "add_entry",
    "build_leaderboard",
    "check_results",
    "load_entries",
    "load_meta",
    "load_protocol",
    "protocol_path",
]
