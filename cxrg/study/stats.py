"""Statistics of the reader study: Spearman's rho, quadratic-weighted Cohen's kappa, Krippendorff's alpha and
percentile-bootstrap intervals for the two agreement measures (resampling the rated items).

Scores are the integers 1-5 (``cxrg.study.SCORES``); both agreement measures use that fixed scale, so a score
nobody gave still counts in the weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cxrg.bench.bootstrap import percentile_interval
from cxrg.study import SCORES

K = len(SCORES)


@dataclass(frozen=True)
class Correlation:
    rho: float
    p: float
    n: int


@dataclass(frozen=True)
class Agreement:
    value: float
    low: float
    high: float
    n: int


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> Correlation:
    """scipy's Spearman rho and two-sided p over the pairs where both are finite; NaN when fewer than three
    pairs or a constant side (rho is undefined then)."""
    from scipy.stats import spearmanr

    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    a, b = xs[keep], ys[keep]
    n = int(keep.sum())
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return Correlation(math.nan, math.nan, n)
    result = spearmanr(a, b)
    return Correlation(float(result.statistic), float(result.pvalue), n)


def _index(scores: Sequence[int]) -> np.ndarray:
    values = np.asarray(scores, dtype=np.int64)
    if values.size and (values.min() < SCORES[0] or values.max() > SCORES[-1]):
        raise ValueError(f"scores must be {SCORES[0]}-{SCORES[-1]}")
    return values - SCORES[0]


def _kappa_from_table(table: np.ndarray) -> float:
    """Quadratic-weighted kappa from a K x K contingency table of counts."""
    n = table.sum()
    if n == 0:
        return math.nan
    categories = np.arange(K)
    weights = (categories[:, None] - categories[None, :]) ** 2
    observed = table / n
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    denominator = (weights * expected).sum()
    if denominator == 0:
        return math.nan
    return float(1.0 - (weights * observed).sum() / denominator)


def weighted_kappa(a: Sequence[int], b: Sequence[int]) -> float:
    """Cohen's kappa with quadratic weights (i - j)^2 on the 1-5 scale for two raters' scores of the same
    items: 1 - sum(w * observed) / sum(w * expected by chance)."""
    ia, ib = _index(a), _index(b)
    if ia.shape != ib.shape:
        raise ValueError("the two raters must score the same items")
    table = np.zeros((K, K))
    np.add.at(table, (ia, ib), 1)
    return _kappa_from_table(table)


def _unit_coincidences(units: Sequence[Sequence[int | None]]) -> np.ndarray:
    """(units, K, K): each unit's contribution to the coincidence matrix; units with < 2 values give 0."""
    out = np.zeros((len(units), K, K))
    for u, values in enumerate(units):
        present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        m = len(present)
        if m < 2:
            continue
        counts = np.bincount(_index([int(v) for v in present]), minlength=K).astype(np.float64)
        out[u] = (np.outer(counts, counts) - np.diag(counts)) / (m - 1)
    return out


def _alpha_from_coincidences(o: np.ndarray, level: str) -> float:
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if n <= 1:
        return math.nan
    c = np.arange(K)
    if level == "nominal":
        delta = (c[:, None] != c[None, :]).astype(np.float64)
    elif level == "interval":
        delta = (c[:, None] - c[None, :]).astype(np.float64) ** 2
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        lo, hi = np.minimum(c[:, None], c[None, :]), np.maximum(c[:, None], c[None, :])
        delta = (cum[hi + 1] - cum[lo] - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    else:
        raise ValueError(f"unknown level {level!r}")
    expected = (np.outer(n_c, n_c) * delta).sum()
    if expected == 0:
        return math.nan
    return float(1.0 - (n - 1) * (o * delta).sum() / expected)


def krippendorff_alpha(units: Sequence[Sequence[int | None]], level: str = "ordinal") -> float:
    """Krippendorff's alpha for units (items) x raters, None where a rater gave no score; any number of
    raters; `level` nominal, ordinal (default: a Likert scale) or interval."""
    return _alpha_from_coincidences(_unit_coincidences(units).sum(axis=0), level)


def _resample_counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n): how often each item is drawn in each percentile-bootstrap resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    return np.stack([np.bincount(row, minlength=n) for row in draws]).astype(np.float64)


def kappa_with_ci(a: Sequence[int], b: Sequence[int], resamples: int = 2000, seed: int = 0) -> Agreement:
    """Quadratic-weighted kappa and its 95 % percentile-bootstrap interval (items resampled)."""
    ia, ib = _index(a), _index(b)
    n = ia.size
    if n == 0:
        return Agreement(math.nan, math.nan, math.nan, 0)
    onehot = np.zeros((n, K * K))
    onehot[np.arange(n), ia * K + ib] = 1
    tables = (_resample_counts(n, resamples, seed) @ onehot).reshape(resamples, K, K)
    low, high = percentile_interval(np.array([_kappa_from_table(t) for t in tables]))
    return Agreement(weighted_kappa(a, b), low, high, n)


def alpha_with_ci(units: Sequence[Sequence[int | None]], level: str = "ordinal", resamples: int = 2000,
                  seed: int = 0) -> Agreement:
    """Krippendorff's alpha and its 95 % percentile-bootstrap interval (units resampled)."""
    per_unit = _unit_coincidences(units)
    pairable = int((per_unit.sum(axis=(1, 2)) > 0).sum())
    if pairable == 0:
        return Agreement(math.nan, math.nan, math.nan, 0)
    flat = per_unit.reshape(len(units), K * K)
    sums = (_resample_counts(len(units), resamples, seed) @ flat).reshape(resamples, K, K)
    low, high = percentile_interval(np.array([_alpha_from_coincidences(o, level) for o in sums]))
    return Agreement(_alpha_from_coincidences(per_unit.sum(axis=0), level), low, high, pairable)
