"""AVHScore: ImageBind audio-visual harmony (TAVGBench paper, eq. 1).

S = (1/N) sum_i cos(E_v(V_i), E_a(A)) over the N frames of a clip, reported x100; the split score
is the mean over clips, with a percentile bootstrap over clips (B=1000). Cosine, not a dot product:
ImageBind scales its audio embedding by a fixed 20 after normalising.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec
from tavgbench.metrics.clipsim import CLIP_BOOTSTRAP, mean_frame_cosine
from tavgbench.metrics.stats import bootstrap_ci


def compute_avhscore(
    generated: ClipFeatures,
    reference: ClipFeatures | None,
    ids: Sequence[str],
    reference_ids: Sequence[str] = (),
    *,
    seed: int = 0,
    n_boot: int = CLIP_BOOTSTRAP,
) -> MetricResult:
    per_clip = {i: mean_frame_cosine(generated[i]["frames"], generated[i]["audio"]) for i in ids}
    values = np.array([per_clip[i] for i in ids])
    low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values) > 1 else (0.0, 0.0)
    return MetricResult(
        name="avhscore",
        value=float(values.mean()),
        higher_is_better=True,
        n_generated=len(values),
        n_reference=None,
        ci_low=low,
        ci_high=high,
        ci_method=f"percentile bootstrap over clips, B={n_boot}, seed={seed}",
        per_sample=per_clip,
    )


AVHSCORE = MetricSpec(
    name="avhscore",
    higher_is_better=True,
    extractor="imagebind",
    outputs=("frames", "audio"),
    needs_reference=False,
    needs_captions=False,
    compute=compute_avhscore,
)
