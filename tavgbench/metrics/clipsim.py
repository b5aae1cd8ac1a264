"""CLIPSIM: CLIP similarity between each clip's frames and its caption.

Per frame 100 * cos(image embedding, text embedding); per clip the mean over its frames; the
split score is the mean over clips, clamped at 0 (torchmetrics ``clip_score``). The interval is a
percentile bootstrap over clips (B=1000).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tavgbench.metrics.base import ClipFeatures, MetricResult, MetricSpec
from tavgbench.metrics.stats import bootstrap_ci, cosine_similarity_rows

CLIP_BOOTSTRAP = 1000


def mean_frame_cosine(frames: np.ndarray, target: np.ndarray) -> float:
    """100 x the mean cosine between each frame embedding ``[t, d]`` and one ``[d]`` vector."""
    frames = np.asarray(frames, dtype=np.float64)
    target = np.broadcast_to(np.asarray(target, dtype=np.float64).reshape(1, -1), frames.shape)
    return float(100.0 * cosine_similarity_rows(frames, target).mean())


def compute_clipsim(
    generated: ClipFeatures,
    reference: ClipFeatures | None,
    ids: Sequence[str],
    reference_ids: Sequence[str] = (),
    *,
    text_embeddings: Mapping[str, np.ndarray],
    seed: int = 0,
    n_boot: int = CLIP_BOOTSTRAP,
) -> MetricResult:
    per_clip = {i: mean_frame_cosine(generated[i]["frames"], text_embeddings[i]) for i in ids}
    values = np.array([per_clip[i] for i in ids])
    low, high = bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values) > 1 else (0.0, 0.0)
    return MetricResult(
        name="clipsim",
        value=max(float(values.mean()), 0.0),
        higher_is_better=True,
        n_generated=len(values),
        n_reference=None,
        ci_low=max(low, 0.0),
        ci_high=max(high, 0.0),
        ci_method=f"percentile bootstrap over clips, B={n_boot}, seed={seed}",
        per_sample=per_clip,
    )


CLIPSIM = MetricSpec(
    name="clipsim",
    higher_is_better=True,
    extractor="clip",
    outputs=("frames",),
    needs_reference=False,
    needs_captions=True,
    compute=compute_clipsim,
)
