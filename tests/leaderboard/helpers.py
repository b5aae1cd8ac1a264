"""Helpers shared by the leaderboard tests (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMMITTED_SUBMISSIONS = Path(__file__).resolve().parents[2] / "submissions"
#: Made-up manifest hashes the test protocol pins.
SPLIT_SHA = {"tavgbench-3k": "3" * 64, "favdbench-test": "f" * 64}
#: Made-up weights hash the test protocol pins for I3D (FVD, KVD).
I3D_SHA = "d" * 64
#: Weights hash of metrics whose weights the test protocol does not pin.
WEIGHTS_SHA = "e" * 64


def meta_fields(system: str = "VideoSound-XL", **changes: Any) -> dict[str, Any]:
    """The fields of a valid computed meta.yaml, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "system": system,
        "source": "computed",
        "authors": ["A. Author", "B. Author"],
        "date": "2025-01-31",
        "paper": {"title": "A model", "url": "https://example.org/paper"},
        "code": "https://example.org/code",
        "parameters": 1_500_000_000,
        "generation": {
            "frames": 16,
            "fps": 8,
            "resolution": "256x256",
            "audio_rate": 16000,
            "steps": 50,
            "guidance": 7.5,
            "seed_policy": "seed 0 for every prompt",
        },
        "notes": "test entry",
    }
    fields.update(changes)
    return fields
