"""FAD: Frechet distance between VGGish embeddings of generated and reference audio.

Every 0.96 s example embedding of a set (fc2 pre-activation, 128-d, no PCA) pools into one
Gaussian. The interval resamples generated clips (all examples of a drawn clip go in together).
Optional FAD-infinity (microsoft/fadtk) extrapolates over sample sizes of examples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec
from tavgbench.metrics.fvd import SET_BOOTSTRAP, SET_CI_METHOD
from tavgbench.metrics.stats import (
    FrechetToReference,
    StatisticsError,
    fad_infinity,
    frechet_distance,
    recentred_interval,
)


def _examples(features: ClipFeatures, ids: Sequence[str]) -> list[np.ndarray]:
    blocks = [np.asarray(features[i]["examples"]).reshape(-1, 128) for i in ids]
    empty = [i for i, b in zip(ids, blocks, strict=True) if len(b) == 0]
    if empty:
        raise StatisticsError(f"no VGGish examples (audio under 0.96 s) for clips {empty[:5]}")
    return blocks


def compute_fad(
    generated: ClipFeatures,
    reference: ClipFeatures,
    ids: Sequence[str],
    reference_ids: Sequence[str],
    *,
    seed: int = 0,
    n_boot: int = SET_BOOTSTRAP,
    infinity: bool = False,
) -> MetricResult:
    gen_blocks = _examples(generated, ids)
    ref = np.concatenate(_examples(reference, reference_ids))
    gen = np.concatenate(gen_blocks)
    fast = FrechetToReference(ref)
    rng = np.random.Generator(np.random.PCG64(seed))
    replicates = []
    for _ in range(n_boot):
        drawn = rng.integers(0, len(gen_blocks), size=len(gen_blocks))
        replicates.append(fast(np.concatenate([gen_blocks[j] for j in drawn])))
    value = frechet_distance(gen, ref)
    low, high = recentred_interval(np.array(replicates), value)
    extras: dict[str, object] = {"n_generated_examples": len(gen), "n_reference_examples": len(ref)}
    if infinity:
        intercept, r2, ns, values = fad_infinity(fast, gen, ref, seed=seed)
        extras |= {"fad_inf": intercept, "fad_inf_r2": r2, "fad_inf_ns": ns.tolist(),
                   "fad_inf_values": values.tolist()}  # fmt: skip
    return MetricResult(
        name="fad",
        value=value,
        higher_is_better=False,
        n_generated=len(gen_blocks),
        n_reference=len(reference_ids),
        ci_low=float(low),
        ci_high=float(high),
        ci_method=f"{SET_CI_METHOD}, B={n_boot}, seed={seed}",
        extras=extras,
    )


FAD = MetricSpec(
    name="fad",
    higher_is_better=False,
    extractor="vggish",
    outputs=("examples",),
    needs_reference=True,
    needs_captions=False,
    compute=compute_fad,
)
