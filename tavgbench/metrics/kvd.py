"""KVD: unbiased polynomial-kernel MMD^2 between I3D logits (MM-Diffusion, TATS).

k(x, y) = (x.y / d + 1)^3 with d = 400, over the full sets, no subsets and no scaling. Reads the
same cached raw I3D features as FVD.
"""

from __future__ import annotations

from collections.abc import Sequence

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec
from tavgbench.metrics.fvd import SET_BOOTSTRAP, set_metric_on_logits
from tavgbench.metrics.stats import kernel_distance


def compute_kvd(
    generated: ClipFeatures,
    reference: ClipFeatures,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    *,
    seed: int = 0,
    n_boot: int = SET_BOOTSTRAP,
) -> MetricResult:
    return set_metric_on_logits(
        "kvd", kernel_distance, lambda _: kernel_distance, generated, reference, ids,
        reference_ids, seed=seed, n_boot=n_boot,
    )  # fmt: skip


KVD = MetricSpec(
    name="kvd",
    higher_is_better=False,
    extractor="i3d",
    outputs=("logits",),
    needs_reference=True,
    needs_captions=False,
    compute=compute_kvd,
)
