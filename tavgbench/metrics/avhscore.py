"""AVHScore: ImageBind audio-visual harmony (TAVGBench paper, eq. 1).

S = (1/N) sum_i cos(E_v(V_i), E_a(A)) over the N frames of a clip, reported x100; the split score
is the mean over clips, with a percentile bootstrap over clips (B=1000). Cosine, not a dot product:
ImageBind scales its audio embedding by a fixed 20 after normalising.

Scoring reduces each clip to its S as its features are read (:func:`clip_harmony`), so a split of
long clips never holds every frame embedding at once; ``compute_avhscore`` takes either form.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec
from tavgbench.metrics.clipsim import CLIP_BOOTSTRAP, mean_frame_cosine
from tavgbench.metrics.stats import bootstrap_ci


def clip_harmony(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One clip's frame and audio embeddings to its S (``harmony``)."""
    return {"harmony": np.array(mean_frame_cosine(arrays["frames"], arrays["audio"]))}


def _harmony(arrays: dict[str, np.ndarray]) -> float:
    return float((arrays if "harmony" in arrays else clip_harmony(arrays))["harmony"])


def compute_avhscore(
    generated: ClipFeatures,
    reference: ClipFeatures | None,
    ids: Sequence[str],
    reference_ids: Sequence[str] = (),
    *,
    seed: int = 0,
    n_boot: int = CLIP_BOOTSTRAP,
) -> MetricResult:
    per_clip = {i: _harmony(generated[i]) for i in ids}
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
    reduce=clip_harmony,
)
