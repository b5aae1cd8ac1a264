"""FVD: Frechet distance between I3D logits of generated and reference clips.

I3D Kinetics-400 logits (pre-softmax) averaged over time, 16 frames per clip, n-1 covariances,
``scipy.linalg.sqrtm`` (google-research ``frechet_video_distance``; see METRICS.md). The interval
is a bootstrap over generated clips (B=100).
"""

from __future__ import annotations

from collections.abc import Sequence

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec, stack
from tavgbench.metrics.stats import FrechetToReference, bootstrap_set_metric, frechet_distance

SET_BOOTSTRAP = 100


def compute_fvd(
    generated: ClipFeatures,
    reference: ClipFeatures,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    *,
    seed: int = 0,
    n_boot: int = SET_BOOTSTRAP,
) -> MetricResult:
    gen, ref = stack(generated, ids, "logits"), stack(reference, reference_ids, "logits")
    fast = FrechetToReference(ref)
    low, high = bootstrap_set_metric(fast, gen, ref, n_boot=n_boot, seed=seed)
    return MetricResult(
        name="fvd",
        value=frechet_distance(gen, ref),
        higher_is_better=False,
        n_generated=len(gen),
        n_reference=len(ref),
        ci_low=low,
        ci_high=high,
        ci_method=f"percentile bootstrap over generated clips, B={n_boot}, seed={seed}",
    )


FVD = MetricSpec(
    name="fvd",
    higher_is_better=False,
    extractor="i3d",
    outputs=("logits",),
    needs_reference=True,
    needs_captions=False,
    compute=compute_fvd,
)
