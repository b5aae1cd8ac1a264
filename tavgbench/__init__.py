"""tavgbench: benchmark and leaderboard toolkit for text-to-audible-video generation."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def load_extractor(name: str, device: str = "cpu", **options: Any) -> Any:
    """Build a named extractor with its real checkpoint (see :mod:`tavgbench.extractors`)."""
    from tavgbench.extractors import load_extractor as _load

    return _load(name, device, **options)


__all__ = ["__version__", "load_extractor"]
