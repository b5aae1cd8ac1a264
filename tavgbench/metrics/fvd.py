"""FVD: Frechet distance between I3D logits of generated and reference clips.

I3D Kinetics-400 logits (pre-softmax) averaged over time, 16 frames per clip, n-1 covariances,
``scipy.linalg.sqrtm`` (google-research ``frechet_video_distance``; see METRICS.md). The interval
is a bootstrap over generated clips (B=100).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec, stack
from tavgbench.metrics.stats import FrechetToReference, bootstrap_set_metric, frechet_distance

SET_BOOTSTRAP = 100
# Set metrics' intervals (FVD, KVD, FAD): see metrics.stats.recentred_interval.
SET_CI_METHOD = "percentile bootstrap over generated clips, recentred on the estimate"


def set_metric_on_logits(
    name: str,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    replicate: Callable[[np.ndarray], Callable[[np.ndarray, np.ndarray], float]],
    generated: ClipFeatures,
    reference: ClipFeatures,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    *,
    seed: int,
    n_boot: int,
) -> MetricResult:
    """A set statistic of I3D logits with its bootstrap over generated clips (FVD, KVD).

    ``replicate(reference)`` gives the function evaluated on each bootstrap replicate (equal to
    ``statistic``, possibly with work on the fixed reference done once).
    """
    gen, ref = stack(generated, ids, "logits"), stack(reference, reference_ids, "logits")
    value = statistic(gen, ref)
    low, high = bootstrap_set_metric(
        replicate(ref), gen, ref, n_boot=n_boot, seed=seed, estimate=value
    )
    return MetricResult(
        name=name,
        value=value,
        higher_is_better=False,
        n_generated=len(gen),
        n_reference=len(ref),
        ci_low=low,
        ci_high=high,
        ci_method=f"{SET_CI_METHOD}, B={n_boot}, seed={seed}",
    )


def compute_fvd(
    generated: ClipFeatures,
    reference: ClipFeatures,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    *,
    seed: int = 0,
    n_boot: int = SET_BOOTSTRAP,
) -> MetricResult:
    return set_metric_on_logits(
        "fvd", frechet_distance, FrechetToReference, generated, reference, ids, reference_ids,
        seed=seed, n_boot=n_boot,
    )  # fmt: skip


FVD = MetricSpec(
    name="fvd",
    higher_is_better=False,
    extractor="i3d",
    outputs=("logits",),
    needs_reference=True,
    needs_captions=False,
    compute=compute_fvd,
)
