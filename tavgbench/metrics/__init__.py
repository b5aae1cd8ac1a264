"""Metrics on extracted features.

The public statistics are :func:`frechet_distance` (FVD, FAD) and :func:`kernel_distance`
(KVD), both taking two ``[n, d]`` feature arrays; the rest of the pure statistics live in
:mod:`tavgbench.metrics.stats`.
"""

from __future__ import annotations

from tavgbench.metrics.stats import frechet_distance, kernel_distance

__all__ = ["frechet_distance", "kernel_distance"]
