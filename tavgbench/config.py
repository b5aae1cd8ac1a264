"""Where tavgbench keeps its caches: weights, splits, features, the demo set."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def home() -> Path:
    """The tavgbench cache root: ``$TAVGBENCH_HOME``, else the platform's user cache folder."""
    env = os.environ.get("TAVGBENCH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("tavgbench", appauthor=False))


def demo_dir() -> Path:
    """Default folder of the generated demo set."""
    return home() / "demo"
