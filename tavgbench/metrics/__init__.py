"""Metrics on extracted features.

The public statistics are :func:`frechet_distance` (FVD, FAD) and :func:`kernel_distance`
(KVD), both taking two ``[n, d]`` feature arrays; the rest of the pure statistics live in
:mod:`tavgbench.metrics.stats`. :data:`METRICS` maps each named metric of the TAVGBench paper to
its :class:`~tavgbench.metrics.base.MetricSpec`.
"""

from __future__ import annotations

from tavgbench.metrics.avhscore import AVHSCORE
from tavgbench.metrics.base import MetricResult, MetricSpec
from tavgbench.metrics.clipsim import CLIPSIM
from tavgbench.metrics.fad import FAD
from tavgbench.metrics.fvd import FVD
from tavgbench.metrics.kvd import KVD
from tavgbench.metrics.stats import frechet_distance, kernel_distance

METRICS: dict[str, MetricSpec] = {m.name: m for m in (FVD, KVD, CLIPSIM, FAD, AVHSCORE)}

__all__ = ["METRICS", "MetricResult", "MetricSpec", "frechet_distance", "kernel_distance"]
