"""Tests of the pure statistics against independent formulations and reference packages."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.linalg

import tavgbench.metrics
from tavgbench.errors import TavgbenchError
from tavgbench.metrics import stats
from tavgbench.metrics.stats import (
    FrechetToReference,
    StatisticsError,
    bootstrap_ci,
    bootstrap_set_metric,
    cosine_similarity_rows,
    fad_infinity,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_distance,
    polynomial_kernel_mmd,
)


def _correlated_gaussian(rng: np.random.Generator, n: int, d: int, shift: float) -> np.ndarray:
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mixing + shift


def _frechet_by_eigenvalues(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance with Tr (S1 S2)^(1/2) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2))).

    S1^(1/2) S2 S1^(1/2) is symmetric PSD and similar to S1 S2, so eigh gives the eigenvalues
    of S1 S2 without any general matrix square root (the TF-GAN style formulation).
    """
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root_s1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    eig = np.linalg.eigvalsh(root_s1 @ s2 @ root_s1)
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


@pytest.mark.parametrize(("n", "d", "shift"), [(300, 16, 0.5), (1000, 64, 0.0), (200, 8, 2.0)])
def test_frechet_matches_eigenvalue_formulation(n: int, d: int, shift: float) -> None:
    rng = np.random.default_rng(n + d)
    x = _correlated_gaussian(rng, n, d, 0.0)
    y = _correlated_gaussian(rng, n + 7, d, shift)
    # Reference: eigh-based formulation above; tolerance rel 1e-6.
    assert frechet_distance(x, y) == pytest.approx(_frechet_by_eigenvalues(x, y), rel=1e-6)


def test_frechet_matches_direct_scipy_formula() -> None:
    rng = np.random.default_rng(3)
    x = _correlated_gaussian(rng, 400, 32, 0.0)
    y = _correlated_gaussian(rng, 400, 32, 0.3)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(axis=0) - y.mean(axis=0)
    expected = (
        diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    )
    # Reference: the pytorch-fid formula written with scipy directly; tolerance rel 1e-6.
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-6)


def test_frechet_singular_covariances_still_match_eigenvalues() -> None:
    # Fewer samples than dimensions: both covariances are rank deficient.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(40, 64))
    y = rng.normal(size=(50, 64)) + 0.2
    # Reference: eigh formulation; looser rel 1e-5 because sqrtm of a singular product is
    # only accurate to about 1e-8 relative.
    assert frechet_distance(x, y) == pytest.approx(_frechet_by_eigenvalues(x, y), rel=1e-5)


def test_frechet_float32_input_computes_in_float64() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(100, 8)).astype(np.float32)
    y = rng.normal(size=(100, 8)).astype(np.float32) + 1
    # Same values cast to float64 must give exactly the same number.
    assert frechet_distance(x, y) == frechet_distance(x.astype(np.float64), y.astype(np.float64))


def test_frechet_identical_sets_is_zero() -> None:
    x = _correlated_gaussian(np.random.default_rng(6), 500, 32, 1.0)
    # Tolerance: absolute 1e-8 on values of order 10 (rounding in sqrtm only).
    assert abs(frechet_distance(x, x.copy())) < 1e-8


def test_frechet_known_mean_shift() -> None:
    # Same covariance, means 0 and 3 in one coordinate: the distance is 3^2 = 9.
    sigma = np.diag([1.0, 2.0, 0.5])
    mu = np.zeros(3)
    value = frechet_distance_from_stats(mu, sigma, mu + np.array([3.0, 0, 0]), sigma)
    assert value == pytest.approx(9.0, abs=1e-10)


def test_frechet_falls_back_to_eps_offset_only_when_not_finite(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_sqrtm = scipy.linalg.sqrtm
    calls: list[np.ndarray] = []

    def flaky_sqrtm(a: np.ndarray) -> np.ndarray:
        calls.append(a)
        return np.full_like(a, np.nan) if len(calls) == 1 else real_sqrtm(a)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    s1, s2 = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
    with caplog.at_level(logging.WARNING):
        value = frechet_distance_from_stats(np.zeros(2), s1, np.zeros(2), s2, eps=1e-6)
    assert len(calls) == 2
    np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
    # Diagonal case by hand: sum (sqrt(a_i + eps) - sqrt(b_i + eps))^2 - 2 eps terms cancel.
    expected = (1 + 9 + 4 + 1) - 2 * (np.sqrt(1.000001 * 9.000001) + np.sqrt(4.000001 * 1.000001))
    assert value == pytest.approx(expected, rel=1e-9)
    assert "singular" in caplog.text


def test_frechet_large_imaginary_part_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda a: a + 0.5j * np.eye(a.shape[0]))
    with pytest.raises(StatisticsError, match="imaginary component"):
        frechet_distance_from_stats(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2))


def test_gaussian_stats_uses_n_minus_1() -> None:
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(mu, [2.0, 4.0])
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False))
    # One feature column still gives a 1x1 covariance.
    assert gaussian_stats(x[:, :1])[1].shape == (1, 1)


def _mmd_with_sklearn(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float):
    pairwise = pytest.importorskip(
        "sklearn.metrics.pairwise", reason="scikit-learn is the MMD reference (extra [test])"
    )
    kxx = pairwise.polynomial_kernel(x, x, degree=degree, gamma=gamma, coef0=coef0)
    kyy = pairwise.polynomial_kernel(y, y, degree=degree, gamma=gamma, coef0=coef0)
    kxy = pairwise.polynomial_kernel(x, y, degree=degree, gamma=gamma, coef0=coef0)
    m, n = len(x), len(y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.sum() / (m * n)
    )


@pytest.mark.parametrize(
    ("degree", "gamma", "coef0"), [(3, None, 1.0), (2, 0.5, 0.0), (4, 0.01, 2.0)]
)
def test_mmd_matches_sklearn_polynomial_kernel(
    degree: int, gamma: float | None, coef0: float
) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 40))
    y = rng.normal(size=(200, 40)) * 1.2 + 0.1
    expected = _mmd_with_sklearn(x, y, degree, 1 / 40 if gamma is None else gamma, coef0)
    # Reference: sklearn polynomial_kernel, unbiased formula; tolerance rel 1e-9.
    value = polynomial_kernel_mmd(x, y, degree=degree, gamma=gamma, coef0=coef0)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mmd_blocked_sums_match_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force blocks of 3 rows (with a remainder) to exercise the block loop.
    monkeypatch.setattr(stats, "_KERNEL_BLOCK_ENTRIES", 3 * 101)
    rng = np.random.default_rng(8)
    x = rng.normal(size=(101, 10))
    y = rng.normal(size=(101, 10)) + 0.3
    # Reference: sklearn polynomial_kernel, unbiased formula; tolerance rel 1e-9.
    assert kernel_distance(x, y) == pytest.approx(_mmd_with_sklearn(x, y, 3, 0.1, 1.0), rel=1e-9)


def test_kernel_distance_is_kvd_default_and_public() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(50, 400)), rng.normal(size=(60, 400))
    assert tavgbench.metrics.kernel_distance(x, y) == polynomial_kernel_mmd(
        x, y, degree=3, gamma=1 / 400, coef0=1
    )
    assert tavgbench.metrics.frechet_distance is frechet_distance


def test_mmd_same_distribution_near_zero_and_shift_detected() -> None:
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(1000, 16)), rng.normal(size=(1000, 16))
    same = kernel_distance(x, y)
    shifted = kernel_distance(x, y + 0.3)
    # Bound: unbiased MMD^2 of equal distributions at n=1000, d=16 spreads ~3e-3 (measured
    # over seeds); a 0.3 shift in every coordinate gives ~0.3.
    assert abs(same) < 1e-2
    assert shifted > 0.1


def test_mmd_identical_sets_is_slightly_negative() -> None:
    # The unbiased estimator drops the diagonal of Kxx and Kyy but not of Kxy, so identical
    # sets give -2 (mean diag K - mean K) / (m - 1) < 0, of order 1/m, not exactly 0.
    x = np.random.default_rng(11).normal(size=(500, 8))
    value = kernel_distance(x, x.copy())
    diagonal = (np.sum(x * x, axis=1) / 8 + 1) ** 3
    assert -2 * diagonal.mean() / 499 < value < 0


@pytest.mark.parametrize("fn", [frechet_distance, kernel_distance])
def test_nan_features_raise_clear_error(fn) -> None:
    x = np.ones((10, 4)) + np.arange(40).reshape(10, 4)
    y = x.copy()
    y[3, 1] = np.nan
    with pytest.raises(
        StatisticsError, match=r"NaN or infinite values in 1 row\(s\) \(first: \[3\]"
    ):
        fn(x, y)
    y[3, 1] = np.inf
    with pytest.raises(StatisticsError, match="second feature set"):
        fn(x, y)


@pytest.mark.parametrize("fn", [frechet_distance, kernel_distance])
def test_shape_errors(fn) -> None:
    rng = np.random.default_rng(12)
    with pytest.raises(StatisticsError, match="2-D array"):
        fn(rng.normal(size=10), rng.normal(size=(10, 1)))
    with pytest.raises(StatisticsError, match="4 features per row but second feature set has 5"):
        fn(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))
    with pytest.raises(StatisticsError, match="1 rows but at least 2"):
        fn(rng.normal(size=(1, 4)), rng.normal(size=(10, 4)))


def test_statistics_error_is_user_facing_value_error() -> None:
    assert issubclass(StatisticsError, TavgbenchError)
    assert issubclass(StatisticsError, ValueError)


def test_cosine_rows_match_normalised_dot_product() -> None:
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(20, 7)), rng.normal(size=(20, 7))
    expected = np.array(
        [u @ v / np.linalg.norm(u) / np.linalg.norm(v) for u, v in zip(a, b, strict=True)]
    )
    # Reference: explicit per-row formula; tolerance rel 1e-12.
    np.testing.assert_allclose(cosine_similarity_rows(a, b), expected, rtol=1e-12)
    # Cosine ignores scale, unlike a raw dot product.
    np.testing.assert_allclose(cosine_similarity_rows(5 * a, b / 3), expected, rtol=1e-12)
    np.testing.assert_allclose(cosine_similarity_rows(a, a), 1.0, rtol=1e-12)


def test_cosine_zero_row_and_shape_errors() -> None:
    a = np.ones((4, 3))
    b = np.ones((4, 3))
    b[2] = 0
    with pytest.raises(StatisticsError, match=r"second embedding set has 1 all-zero row\(s\)"):
        cosine_similarity_rows(a, b)
    with pytest.raises(StatisticsError, match="same shape"):
        cosine_similarity_rows(a, np.ones((3, 3)))


def test_bootstrap_ci_deterministic_and_contains_mean() -> None:
    values = np.random.default_rng(14).normal(loc=5.0, size=400)
    first = bootstrap_ci(values, seed=1)
    assert first == bootstrap_ci(values, seed=1)
    assert first != bootstrap_ci(values, seed=2)
    low, high = first
    assert low < values.mean() < high
    # Coverage sanity: the 95% percentile interval of a mean is about mean +- 1.96 sd/sqrt(n).
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)


def test_bootstrap_ci_custom_statistic_and_errors() -> None:
    values = np.arange(101, dtype=np.float64)
    low, high = bootstrap_ci(values, statistic=np.median, n_boot=200)
    assert low <= 50 <= high
    with pytest.raises(StatisticsError, match="1-D"):
        bootstrap_ci(np.ones((3, 2)))
    with pytest.raises(StatisticsError, match="level"):
        bootstrap_ci(values, level=1.5)
    with pytest.raises(StatisticsError, match="NaN"):
        bootstrap_ci(np.array([1.0, np.nan, 2.0]))


def test_bootstrap_set_metric_resamples_generated_only() -> None:
    rng = np.random.default_rng(15)
    generated = rng.normal(size=(200, 3)) + 1
    reference = rng.normal(size=(300, 3))
    seen_reference: list[np.ndarray] = []

    def mean_gap(gen: np.ndarray, ref: np.ndarray) -> float:
        seen_reference.append(ref)
        assert gen.shape == generated.shape
        return float(np.linalg.norm(gen.mean(axis=0) - ref.mean(axis=0)))

    interval = bootstrap_set_metric(mean_gap, generated, reference, n_boot=50, seed=3)
    assert len(seen_reference) == 51  # 50 replicates and the estimate itself
    assert all(np.array_equal(ref, reference) for ref in seen_reference)
    assert interval == bootstrap_set_metric(mean_gap, generated, reference, n_boot=50, seed=3)
    low, high = interval
    assert low < mean_gap(generated, reference) < high


def test_bootstrap_set_metric_frechet_interval_is_ordered() -> None:
    rng = np.random.default_rng(16)
    generated = rng.normal(size=(300, 4)) + 0.5
    reference = rng.normal(size=(300, 4))
    low, high = bootstrap_set_metric(frechet_distance, generated, reference, n_boot=40)
    assert 0 < low < high


def test_fad_infinity_recovers_exact_intercept() -> None:
    # A metric that is exactly 2 + 30/n: the fit must return intercept 2 and R^2 1.
    generated = np.random.default_rng(17).normal(size=(1200, 4))
    reference = np.zeros((5, 4)) + np.arange(5)[:, None]
    intercept, r2, ns, values = fad_infinity(
        lambda gen, _ref: 2.0 + 30.0 / len(gen), generated, reference
    )
    assert intercept == pytest.approx(2.0, rel=1e-9)
    assert r2 == pytest.approx(1.0, abs=1e-12)
    # fadtk spacing: int(linspace(min_n, N, 25)).
    np.testing.assert_array_equal(ns, [int(n) for n in np.linspace(500, 1200, 25)])
    np.testing.assert_allclose(values, 2.0 + 30.0 / ns)


def test_fad_infinity_on_gaussians_removes_sample_size_bias() -> None:
    rng = np.random.default_rng(18)
    reference = rng.normal(size=(20000, 32))
    generated = rng.normal(size=(3000, 32))
    generated[:, 0] += 1.0
    intercept, r2, ns, values = fad_infinity(
        frechet_distance, generated, reference, min_n=100, seed=4
    )
    # The population distance is 1 (unit mean shift, equal covariances). In 32 dimensions the
    # Frechet estimate carries a ~300/n upward bias (4.4 at n=100, measured), which dominates
    # the sampling noise, so the 1/n line fits well (R^2 0.98 over seeds 0-5) and its
    # intercept lands within 0.2 of 1 (1.06-1.16 over seeds 0-5): the residual is the
    # finite 3000-row generated set itself, which resampling cannot remove.
    assert intercept == pytest.approx(1.0, abs=0.25)
    assert r2 > 0.95
    assert intercept < values[-1] < values[0]
    assert ns[0] == 100 and ns[-1] == 3000
    again = fad_infinity(frechet_distance, generated, reference, min_n=100, seed=4)
    assert (intercept, r2) == again[:2]


def test_fad_infinity_does_not_clamp_min_n_like_fadtk() -> None:
    generated = np.random.default_rng(19).normal(size=(100, 2))
    _, _, ns, _ = fad_infinity(lambda g, _r: 1.0 / len(g), generated, generated, n_points=5)
    # fadtk runs linspace(500, 100): sizes above N are drawn with replacement.
    np.testing.assert_array_equal(ns, [500, 400, 300, 200, 100])
    with pytest.raises(StatisticsError, match="only one"):
        fad_infinity(frechet_distance, generated, generated, min_n=100)


@pytest.mark.parametrize(("n", "d"), [(300, 16), (40, 64), (8, 32)])
def test_frechet_to_reference_equals_sqrtm_formula(n: int, d: int) -> None:
    """The eigenvalue form used in bootstraps agrees with scipy sqrtm (also when n < d)."""
    rng = np.random.default_rng(d)
    reference = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    fast = FrechetToReference(reference)
    for shift in (0.0, 0.5):
        generated = rng.normal(shift, 1.0, size=(n, d)) @ rng.normal(size=(d, d))
        assert fast(generated) == pytest.approx(frechet_distance(generated, reference), rel=1e-6)


def test_recentred_interval_keeps_small_set_frechet_estimates_inside() -> None:
    # 24 clips of 64-d features, as small as the demo: repeated rows push every Frechet replicate
    # above the estimate, so the plain percentile interval misses it.
    rng = np.random.default_rng(19)
    generated = rng.normal(size=(24, 64)) + 0.3
    reference = rng.normal(size=(200, 64))
    estimate = frechet_distance(generated, reference)
    boot = np.random.Generator(np.random.PCG64(0))
    replicates = np.array(
        [frechet_distance(generated[boot.integers(0, 24, size=24)], reference) for _ in range(60)]
    )
    plain_low, plain_high = np.quantile(replicates, [0.025, 0.975])
    assert estimate < plain_low
    low, high = bootstrap_set_metric(frechet_distance, generated, reference, n_boot=60, seed=0)
    assert low < estimate < high
    # Reference: the percentile interval moved by the bootstrap bias mean(replicates) - estimate
    # (Efron & Tibshirani 1993, sec. 10.3), same replicates; float64 rounding.
    bias = replicates.mean() - estimate
    assert (low, high) == pytest.approx((plain_low - bias, plain_high - bias), rel=1e-12)
