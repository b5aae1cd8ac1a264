"""The metric contract and the registry of named metrics.

A metric is a pure function of per-clip features (already extracted and cached by the harness):
it names the extractor outputs it needs, whether it needs reference clips, and which direction is
better, and returns a :class:`MetricResult` with its value, a 95% bootstrap interval, per-clip
values where they are defined and the sample counts used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Per-clip features: ``features[clip_id][output_name]`` is an array (see each metric's inputs).
ClipFeatures = Mapping[str, Mapping[str, np.ndarray]]


@dataclass
class MetricResult:
    """What one metric computed on one submission."""

    name: str
    value: float
    higher_is_better: bool
    n_generated: int
    n_reference: int | None
    ci_low: float
    ci_high: float
    ci_method: str
    per_sample: dict[str, float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricSpec:
    """A named metric: what it needs and the function that computes it.

    Attributes:
        name: ``fvd``, ``kvd``, ``clipsim``, ``fad`` or ``avhscore``.
        higher_is_better: direction of improvement.
        extractor: the extractor whose outputs it reads.
        outputs: the per-clip output names it needs from that extractor.
        needs_reference: whether reference clips are compared against.
        needs_captions: whether the captions' text embeddings are needed.
        compute: ``compute(generated, reference, ids, **context) -> MetricResult``.
        reduce: applied to each generated clip's features as they are loaded, for a metric that
            needs only a per-clip summary (its ``compute`` takes the summary): the harness then
            never holds every clip's raw features at once.
    """

    name: str
    higher_is_better: bool
    extractor: str
    outputs: tuple[str, ...]
    needs_reference: bool
    needs_captions: bool
    compute: Callable[..., MetricResult]
    reduce: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None


def stack(features: ClipFeatures, ids: Sequence[str], output: str) -> np.ndarray:
    """``[n, d]`` array of one per-clip vector output, in the order of ``ids``."""
    return np.stack([np.asarray(features[i][output]).reshape(-1) for i in ids])
