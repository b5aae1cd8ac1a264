"""KVD: unbiased polynomial-kernel MMD^2 between I3D logits (MM-Diffusion, TATS).

k(x, y) = (x.y / d + 1)^3 with d = 400, over the full sets, no subsets and no scaling. Reads the
same cached raw I3D features as FVD.
"""

from __future__ import annotations

from collections.abc import Sequence

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec, stack
from tavgbench.metrics.fvd import SET_BOOTSTRAP
from tavgbench.metrics.stats import bootstrap_set_metric, kernel_distance


def compute_kvd(
    generated: ClipFeatures,
    reference: ClipFeatures,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    *,
    seed: int = 0,
    n_boot: int = SET_BOOTSTRAP,
) -> MetricResult:
    gen, ref = stack(generated, ids, "logits"), stack(reference, reference_ids, "logits")
    low, high = bootstrap_set_metric(kernel_distance, gen, ref, n_boot=n_boot, seed=seed)
    return MetricResult(
        name="kvd",
        value=kernel_distance(gen, ref),
        higher_is_better=False,
        n_generated=len(gen),
        n_reference=len(ref),
        ci_low=low,
        ci_high=high,
        ci_method=f"percentile bootstrap over generated clips, B={n_boot}, seed={seed}",
    )


KVD = MetricSpec(
    name="kvd",
    higher_is_better=False,
    extractor="i3d",
    outputs=("logits",),
    needs_reference=True,
    needs_captions=False,
    compute=compute_kvd,
)
