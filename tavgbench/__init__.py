"""tavgbench: benchmark and leaderboard toolkit for text-to-audible-video generation."""

from __future__ import annotations

__version__ = "0.1.0"
