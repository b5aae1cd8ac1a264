"""The named metrics on synthetic features: formulas, directions, intervals, counts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity

from tavgbench.metrics import METRICS
from tavgbench.metrics.avhscore import AVHSCORE, compute_avhscore
from tavgbench.metrics.clipsim import compute_clipsim
from tavgbench.metrics.fad import compute_fad
from tavgbench.metrics.fvd import compute_fvd
from tavgbench.metrics.kvd import compute_kvd
from tavgbench.metrics.stats import StatisticsError, frechet_distance, kernel_distance


def _i3d(rng: np.random.Generator, n: int, shift: float) -> dict[str, dict[str, np.ndarray]]:
    return {f"c{i}": {"logits": rng.normal(shift, 1.0, 400)} for i in range(n)}


def test_fvd_kvd_wire_i3d_logits_to_the_statistics() -> None:
    rng = np.random.default_rng(0)
    ref, near, far = _i3d(rng, 60, 0.0), _i3d(rng, 60, 0.1), _i3d(rng, 60, 1.0)
    ids = list(near)
    for compute, statistic in ((compute_fvd, frechet_distance), (compute_kvd, kernel_distance)):
        result = compute(near, ref, ids, ids, n_boot=3)
        expected = statistic(np.stack([near[i]["logits"] for i in ids]),
                             np.stack([ref[i]["logits"] for i in ids]))  # fmt: skip
        assert result.value == pytest.approx(expected, rel=1e-12)
        assert result.n_generated == result.n_reference == 60
        assert result.ci_low <= result.ci_high and "B=3" in result.ci_method
        assert compute(far, ref, ids, ids, n_boot=1).value > result.value


def test_fad_pools_examples_and_resamples_clips() -> None:
    rng = np.random.default_rng(1)
    ref = {
        f"r{i}": {"examples": rng.normal(0, 1, (int(rng.integers(2, 6)), 128))} for i in range(40)
    }
    gen = {f"g{i}": {"examples": rng.normal(0.5, 1, (3, 128))} for i in range(40)}
    result = compute_fad(gen, ref, list(gen), list(ref), n_boot=10, infinity=False)
    pooled_gen = np.concatenate([g["examples"] for g in gen.values()])
    pooled_ref = np.concatenate([r["examples"] for r in ref.values()])
    assert result.value == pytest.approx(frechet_distance(pooled_gen, pooled_ref))
    assert result.n_generated == 40 and result.extras["n_generated_examples"] == 120
    empty = {"g0": {"examples": np.zeros((0, 128))}}
    with pytest.raises(StatisticsError, match="no VGGish examples"):
        compute_fad(empty, ref, ["g0"], list(ref))


def test_clipsim_is_100_cosine_mean_per_clip_then_over_clips() -> None:
    rng = np.random.default_rng(2)
    texts = {f"c{i}": rng.normal(size=512) for i in range(8)}
    frames = {i: {"frames": t + rng.normal(0, 2, (16, 512))} for i, t in texts.items()}
    ids = list(texts)
    result = compute_clipsim(frames, None, ids, text_embeddings=texts, n_boot=50)
    # Reference: scikit-learn cosine, per frame, x100, averaged per clip then over clips.
    per_clip = [100 * cosine_similarity(frames[i]["frames"], texts[i][None]).mean() for i in ids]
    assert result.value == pytest.approx(np.mean(per_clip), rel=1e-9)
    assert result.per_sample is not None and set(result.per_sample) == set(ids)
    swapped = {i: texts[ids[(k + 1) % len(ids)]] for k, i in enumerate(ids)}
    assert compute_clipsim(frames, None, ids, text_embeddings=swapped).value < result.value
    # The split score is clamped at 0 (torchmetrics clip_score).
    opposite = {i: -t for i, t in texts.items()}
    assert compute_clipsim(frames, None, ids, text_embeddings=opposite).value == 0.0


def test_avhscore_drops_when_audio_is_shuffled() -> None:
    rng = np.random.default_rng(3)
    clips = {}
    for i in range(10):
        audio = rng.normal(size=64)
        clips[f"c{i}"] = {"frames": audio + rng.normal(0, 1.5, (20, 64)), "audio": 20 * audio}
    ids = list(clips)
    matched = compute_avhscore(clips, None, ids, n_boot=50)
    expected = np.mean([100 * cosine_similarity(clips[i]["frames"], clips[i]["audio"][None]).mean()
                        for i in ids])  # fmt: skip
    assert matched.value == pytest.approx(expected, rel=1e-9)
    shuffled = {i: {"frames": clips[i]["frames"], "audio": clips[ids[(k + 3) % 10]]["audio"]}
                for k, i in enumerate(ids)}  # fmt: skip
    assert compute_avhscore(shuffled, None, ids).value < matched.value
    # Scoring reduces each clip as it loads it (AVHSCORE.reduce): the same per-clip values.
    reduced = {i: AVHSCORE.reduce(clips[i]) for i in ids}
    assert all(set(r) == {"harmony"} for r in reduced.values())
    again = compute_avhscore(reduced, None, ids, n_boot=50)
    assert again.value == matched.value and again.per_sample == matched.per_sample


def test_registry_names_directions_and_extractors() -> None:
    assert list(METRICS) == ["fvd", "kvd", "clipsim", "fad", "avhscore"]
    assert {m.name for m in METRICS.values() if m.higher_is_better} == {"clipsim", "avhscore"}
    assert {m.name: m.extractor for m in METRICS.values()} == {
        "fvd": "i3d", "kvd": "i3d", "clipsim": "clip", "fad": "vggish", "avhscore": "imagebind"
    }  # fmt: skip
