"""Pure statistics on feature arrays: Frechet distance, polynomial-kernel MMD, cosine, bootstrap.

Every function takes numpy arrays of shape ``[n, d]`` (one row per sample) and computes in
float64 whatever the input dtype, so float32 extractor outputs give the same statistics as
their float64 copies. Nothing here knows about extractors or files; the metric modules wire
extractors to these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import scipy.linalg

from tavgbench.errors import TavgbenchError

logger = logging.getLogger(__name__)

# pytorch-fid and TF-GAN tolerate this much imaginary part on the diagonal of sqrtm(S1 S2)
# before declaring the result meaningless.
_MAX_IMAGINARY = 1e-3

# Rows of one kernel block are chosen so a block holds about this many float64 entries (32 MiB),
# which keeps polynomial_kernel_mmd on 10k x 10k sets far below three full kernel matrices.
_KERNEL_BLOCK_ENTRIES = 4 * 1024 * 1024


class StatisticsError(TavgbenchError, ValueError):
    """Features cannot be compared: wrong shape, too few samples, or non-finite values."""


def _features(x: np.ndarray, name: str, min_rows: int = 1) -> np.ndarray:
    """Checks that ``x`` is a finite ``[n, d]`` array with at least ``min_rows`` rows.

    Returns:
        ``x`` as a float64 array.
    """
    array = np.asarray(x)
    if array.ndim != 2:
        raise StatisticsError(
            f"{name} must be a 2-D array [samples, features], got shape {array.shape}; "
            "stack one feature vector per clip into rows."
        )
    if array.shape[1] == 0:
        raise StatisticsError(f"{name} has no feature columns (shape {array.shape}).")
    if array.shape[0] < min_rows:
        raise StatisticsError(
            f"{name} has {array.shape[0]} rows but at least {min_rows} are needed; "
            "score more clips."
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise StatisticsError(f"{name} must hold real numbers, got dtype {array.dtype}.")
    array = array.astype(np.float64, copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise StatisticsError(
            f"{name} has NaN or infinite values in {bad_rows.size} row(s) "
            f"(first: {bad_rows[:5].tolist()}); check the clips that produced them."
        )
    return array


def _same_width(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if x.shape[1] != y.shape[1]:
        raise StatisticsError(
            f"{x_name} has {x.shape[1]} features per row but {y_name} has {y.shape[1]}; "
            "both sets must come from the same extractor and protocol."
        )


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the rows of ``x``.

    The covariance divides by ``n - 1`` (``np.cov(x, rowvar=False)``), as TF-GAN, pytorch-fid
    and the FVD reference do.

    Args:
        x: features ``[n, d]`` with ``n >= 2``.

    Returns:
        ``(mu [d], sigma [d, d])`` in float64.
    """
    x = _features(x, "features", min_rows=2)
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))
    return mu, sigma


def frechet_distance_from_stats(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
    """Frechet distance between two Gaussians given by their means and covariances.

    ``d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` with the square root from
    ``scipy.linalg.sqrtm``, keeping its real part. Only when that square root is not finite
    (a singular product) is ``eps * I`` added to both covariances and the root recomputed.

    Args:
        mu1: mean ``[d]`` of the first set.
        sigma1: covariance ``[d, d]`` of the first set.
        mu2: mean ``[d]`` of the second set.
        sigma2: covariance ``[d, d]`` of the second set.
        eps: diagonal offset of the fallback.

    Returns:
        The squared Frechet distance (can be a tiny negative number from rounding when the
        two Gaussians are identical).

    Raises:
        StatisticsError: shapes disagree, values are not finite, or the square root has an
            imaginary part above 1e-3 on its diagonal (the covariances are not valid).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.ndim != 1 or mu2.shape != mu1.shape:
        raise StatisticsError(
            f"means must be vectors of the same length, got {mu1.shape} and {mu2.shape}."
        )
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise StatisticsError(
            f"covariances must be {d}x{d} to match the means, got {sigma1.shape} and "
            f"{sigma2.shape}."
        )
    for name, value in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(value).all():
            raise StatisticsError(f"{name} has NaN or infinite values.")

    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        logger.warning(
            "Frechet distance: sqrtm(S1 S2) is not finite (singular product); "
            "adding %g to the covariance diagonals",
            eps,
        )
        offset = np.eye(d) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.isfinite(covmean).all():
            raise StatisticsError(
                "sqrtm(S1 S2) is not finite even with an eps offset on the covariances; "
                "the features are degenerate (e.g. constant or huge values)."
            )
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > _MAX_IMAGINARY:
            raise StatisticsError(
                f"sqrtm(S1 S2) has an imaginary component of {imaginary:.3g} on its diagonal; "
                "the covariances are not positive semi-definite or far too few samples were "
                "used for the feature dimension."
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (FVD, FAD, FID).

    Frechet distances are biased by the sample count, so they compare only at equal ``n``.
    This function does not enforce equal counts; callers record both counts next to the value.

    Args:
        x: features ``[m, d]``, ``m >= 2``.
        y: features ``[n, d]``, ``n >= 2``.

    Returns:
        The squared Frechet distance.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(500, 4)), rng.normal(size=(500, 4)) + 1.0
        >>> round(frechet_distance(a, b))
        4
    """
    x = _features(x, "first feature set", min_rows=2)
    y = _features(y, "second feature set", min_rows=2)
    _same_width(x, y, "first feature set", "second feature set")
    return frechet_distance_from_stats(*gaussian_stats(x), *gaussian_stats(y))


class FrechetToReference:
    """Frechet distance of many sets to one fixed reference set, fast (for bootstraps).

    ``Tr (S1 S2)^(1/2)`` equals ``Tr (A S1 A)^(1/2)`` with ``A = S2^(1/2)`` symmetric, and
    ``A S1 A`` is symmetric positive semi-definite, so the trace is the sum of the square roots
    of its eigenvalues (``numpy.linalg.eigvalsh``). ``A`` is computed once, which makes each
    evaluation several times cheaper than ``scipy.linalg.sqrtm`` of ``S1 S2``; reported values
    still come from :func:`frechet_distance`, and the two agree to float64 rounding (tested).

    Args:
        reference: reference features ``[m, d]``, ``m >= 2``.
    """

    def __init__(self, reference: np.ndarray) -> None:
        reference = _features(reference, "reference features", min_rows=2)
        self.mu, self.sigma = gaussian_stats(reference)
        eigenvalues, vectors = np.linalg.eigh(self.sigma)
        self.root = (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T
        self.trace = float(np.trace(self.sigma))

    def __call__(self, generated: np.ndarray, _reference: np.ndarray | None = None) -> float:
        generated = _features(generated, "generated features", min_rows=2)
        _same_width(generated, self.mu[None], "generated features", "reference features")
        mu, sigma = gaussian_stats(generated)
        product = self.root @ sigma @ self.root
        eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
        cross = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
        diff = mu - self.mu
        return float(diff @ diff + np.trace(sigma) + self.trace - 2.0 * cross)


def _kernel_sum(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Sum of ``(gamma x.y + coef0)^degree`` over all row pairs, one row block at a time."""
    rows = max(1, _KERNEL_BLOCK_ENTRIES // y.shape[0])
    total = 0.0
    for start in range(0, x.shape[0], rows):
        block = x[start : start + rows] @ y.T
        block *= gamma
        block += coef0
        block **= degree
        total += float(block.sum())
    return total


def polynomial_kernel_mmd(
    x: np.ndarray,
    y: np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> float:
    """Unbiased squared MMD with a polynomial kernel, over the full sets (no subsets).

    ``k(a, b) = (gamma a.b + coef0)^degree`` and

    ``MMD^2 = (sum Kxx - tr Kxx)/(m(m-1)) + (sum Kyy - tr Kyy)/(n(n-1)) - 2 sum Kxy/(mn)``.

    Kernel matrices are summed in row blocks, so memory stays bounded for large sets.

    Args:
        x: features ``[m, d]``, ``m >= 2``.
        y: features ``[n, d]``, ``n >= 2``.
        degree: kernel degree.
        gamma: scale of the dot product; ``1/d`` when None.
        coef0: kernel offset.

    Returns:
        The unbiased MMD^2 estimate (can be slightly negative for similar sets).
    """
    x = _features(x, "first feature set", min_rows=2)
    y = _features(y, "second feature set", min_rows=2)
    _same_width(x, y, "first feature set", "second feature set")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 1:
        raise StatisticsError(f"kernel degree must be a positive integer, got {degree!r}.")
    gamma = 1.0 / x.shape[1] if gamma is None else float(gamma)
    m, n = x.shape[0], y.shape[0]

    def trace(a: np.ndarray) -> float:
        return float(((gamma * np.einsum("ij,ij->i", a, a) + coef0) ** degree).sum())

    sum_xx = _kernel_sum(x, x, degree, gamma, coef0) - trace(x)
    sum_yy = _kernel_sum(y, y, degree, gamma, coef0) - trace(y)
    sum_xy = _kernel_sum(x, y, degree, gamma, coef0)
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * sum_xy / (m * n)


def kernel_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Kernel distance as in KVD: unbiased MMD^2 with ``k(a, b) = (a.b / d + 1)^3``.

    This is the MM-Diffusion / TATS KVD statistic: full sets, no subsets, no scaling.

    Args:
        x: features ``[m, d]``, ``m >= 2``.
        y: features ``[n, d]``, ``n >= 2``.

    Returns:
        The unbiased MMD^2 estimate.
    """
    return polynomial_kernel_mmd(x, y, degree=3, gamma=None, coef0=1.0)


def cosine_similarity_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``.

    Args:
        a: ``[n, d]``.
        b: ``[n, d]``.

    Returns:
        ``[n]`` float64 cosines in [-1, 1].

    Raises:
        StatisticsError: shapes differ, values are not finite, or a row has zero norm (its
            direction, and so its cosine, is undefined).
    """
    a = _features(a, "first embedding set")
    b = _features(b, "second embedding set")
    if a.shape != b.shape:
        raise StatisticsError(
            f"paired embeddings must have the same shape, got {a.shape} and {b.shape}."
        )
    norm_a = np.linalg.norm(a, axis=1)
    norm_b = np.linalg.norm(b, axis=1)
    for name, norms in (("first embedding set", norm_a), ("second embedding set", norm_b)):
        zero = np.flatnonzero(norms == 0.0)
        if zero.size:
            raise StatisticsError(
                f"{name} has {zero.size} all-zero row(s) (first: {zero[:5].tolist()}), whose "
                "cosine similarity is undefined; check the clips that produced them."
            )
    return np.einsum("ij,ij->i", a, b) / (norm_a * norm_b)


def _check_bootstrap_args(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise StatisticsError(f"n_boot must be at least 1, got {n_boot}.")
    if not 0.0 < level < 1.0:
        raise StatisticsError(f"confidence level must be in (0, 1), got {level}.")


def _percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    alpha = 1.0 - level
    low, high = np.quantile(replicates, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def recentred_interval(
    replicates: np.ndarray, estimate: float, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of bootstrap ``replicates`` moved by the bootstrap bias estimate
    ``mean(replicates) - estimate`` (Efron & Tibshirani 1993, sec. 10.3), so that it describes
    the spread of ``estimate`` itself.

    Resampling with replacement repeats rows, and set statistics such as Frechet distances and
    MMD grow with repeated rows: their replicates sit above the estimate, and a plain percentile
    interval can miss the estimate altogether on small sets. Removing the bias keeps the
    replicates' spread and centres it where the estimate is.
    """
    replicates = np.asarray(replicates, dtype=np.float64)
    bias = float(replicates.mean()) - float(estimate)
    low, high = _percentile_interval(replicates, level)
    return low - bias, high - bias


def bootstrap_ci(
    values: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    statistic: Callable[[np.ndarray], float] = np.mean,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic of per-sample values.

    Resamples ``values`` with replacement ``n_boot`` times with ``Generator(PCG64(seed))``,
    so the interval is the same for the same seed.

    Args:
        values: per-sample scores ``[n]``, ``n >= 2``.
        n_boot: number of bootstrap replicates.
        seed: random seed.
        level: confidence level.
        statistic: maps a resampled ``[n]`` array to a number.

    Returns:
        ``(low, high)``.
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise StatisticsError(f"per-sample values must be a 1-D array, got shape {values.shape}.")
    samples = _features(values[:, None], "per-sample values", min_rows=2)[:, 0]
    _check_bootstrap_args(n_boot, level)
    rng = np.random.Generator(np.random.PCG64(seed))
    n = samples.shape[0]
    replicates = np.array(
        [statistic(samples[rng.integers(0, n, size=n)]) for _ in range(n_boot)], dtype=np.float64
    )
    return _percentile_interval(replicates, level)


def bootstrap_set_metric(
    fn: Callable[[np.ndarray, np.ndarray], float],
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    n_boot: int = 100,
    seed: int = 0,
    level: float = 0.95,
    estimate: float | None = None,
) -> tuple[float, float]:
    """Bootstrap interval of a set-level metric such as FVD, FAD or KVD.

    The generated rows are resampled with replacement (the reference set stays fixed) and
    ``fn(resampled_generated, reference)`` is evaluated for each replicate; the interval is
    their percentile interval recentred on the estimate (:func:`recentred_interval`), because
    repeated rows bias these statistics upward.

    Args:
        fn: set metric, e.g. :func:`frechet_distance`.
        generated: generated features ``[n, d]``.
        reference: reference features ``[m, d]``.
        n_boot: number of bootstrap replicates.
        seed: random seed for ``Generator(PCG64(seed))``.
        level: confidence level.
        estimate: ``fn(generated, reference)`` when the caller has it already.

    Returns:
        ``(low, high)``.
    """
    generated = _features(generated, "generated features", min_rows=2)
    reference = _features(reference, "reference features", min_rows=2)
    _same_width(generated, reference, "generated features", "reference features")
    _check_bootstrap_args(n_boot, level)
    rng = np.random.Generator(np.random.PCG64(seed))
    n = generated.shape[0]
    replicates = np.array(
        [fn(generated[rng.integers(0, n, size=n)], reference) for _ in range(n_boot)],
        dtype=np.float64,
    )
    if estimate is None:
        estimate = fn(generated, reference)
    return recentred_interval(replicates, estimate, level)


def fad_infinity(
    fn: Callable[[np.ndarray, np.ndarray], float],
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    n_points: int = 25,
    min_n: int = 500,
    seed: int = 0,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Extrapolates a sample-size-biased metric to infinitely many samples (FAD-infinity).

    Follows microsoft/fadtk ``FrechetAudioDistance.score_inf``: sample sizes
    ``int(linspace(min_n, N, n_points))`` with ``N`` the number of generated rows; for each
    size, that many generated rows are drawn with replacement and ``fn(sample, reference)`` is
    evaluated; a least-squares line of value against ``1/n`` gives the intercept (the value at
    ``n -> infinity``) and its R^2. As in fadtk, ``min_n`` is not clamped to ``N``: when
    ``N < min_n`` the sizes run from ``min_n`` down to ``N``, which drawing with replacement
    allows.

    Args:
        fn: set metric, e.g. :func:`frechet_distance`.
        generated: generated features ``[N, d]``.
        reference: reference features ``[m, d]``.
        n_points: number of sample sizes.
        min_n: first sample size.
        seed: random seed for ``Generator(PCG64(seed))``.

    Returns:
        ``(intercept, r2, ns, values)``: FAD-infinity, the R^2 of the fit, the sample sizes
        ``[n_points]`` and the metric value at each ``[n_points]``.
    """
    generated = _features(generated, "generated features", min_rows=2)
    reference = _features(reference, "reference features", min_rows=2)
    _same_width(generated, reference, "generated features", "reference features")
    if min_n < 2:
        raise StatisticsError(f"min_n must be at least 2, got {min_n}.")
    if n_points < 2:
        raise StatisticsError(f"n_points must be at least 2, got {n_points}.")
    total = generated.shape[0]
    ns = np.linspace(min_n, total, n_points).astype(np.int64)
    if np.unique(ns).size < 2:
        raise StatisticsError(
            f"FAD-infinity needs several sample sizes, but min_n={min_n} and {total} generated "
            "rows give only one; lower min_n or score more clips."
        )
    rng = np.random.Generator(np.random.PCG64(seed))
    values = np.array(
        [fn(generated[rng.integers(0, total, size=n)], reference) for n in ns], dtype=np.float64
    )
    inverse_n = 1.0 / ns
    slope, intercept = np.polyfit(inverse_n, values, 1)
    residual = np.sum((values - (slope * inverse_n + intercept)) ** 2)
    spread = np.sum((values - values.mean()) ** 2)
    # A constant series is fitted exactly by a flat line; R^2 would be 0/0.
    r2 = 1.0 if spread == 0.0 else 1.0 - residual / spread
    return float(intercept), float(r2), ns, values
