"""Percentile bootstrap of per-class means, vectorised and paired across models.

For each class the resample indices are drawn once, from a generator seeded by (seed, class name), and used
for every model and metric, so that differences between models are paired comparisons. A value that is NaN
(a failed sample, or an undefined CNR) is left out of that resample's mean: the indices stay shared, the
mean is over the finite values drawn. The "Average" row resamples every class with its own indices and
averages the per-class means of the same resample, like the paper's Average row (the mean of the per-class
means); a class in which the model has no value at all (every sample failed) is left out of its Average,
and the report says so.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 10_000
AVERAGE = "Average"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def class_indices(category: str, n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices into the class's samples; the same for every model and metric."""
    key = zlib.crc32(category.encode("utf-8"))
    rng = np.random.default_rng(np.random.SeedSequence([seed, key]))
    return rng.integers(0, n, size=(resamples, n), dtype=np.int64)


def resampled_means(values: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Mean of each resample (row of `indices`), NaN values left out; NaN when a resample drew none."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values[indices].mean(axis=1)
    drawn = np.where(finite, values, 0.0)[indices].sum(axis=1)
    counts = finite[indices].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, drawn / np.maximum(counts, 1), np.nan)


def percentile_interval(means: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0 * 100.0
    finite = means[np.isfinite(means)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_classes(values_by_class: Mapping[str, np.ndarray], resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0, level: float = 0.95,
                      indices_by_class: Mapping[str, np.ndarray] | None = None) -> dict[str, Interval]:
    """Per-class mean with percentile CI, plus the Average over classes.

    `values_by_class` maps class -> per-sample values in the dataset's fixed sample order (NaN for
    missing). Pass `indices_by_class` to reuse indices across calls (models, metrics).
    """
    result: dict[str, Interval] = {}
    class_means: list[np.ndarray] = []
    point_means: list[float] = []
    for category in sorted(values_by_class):
        values = np.asarray(values_by_class[category], dtype=np.float64)
        n_finite = int(np.isfinite(values).sum())
        if values.size == 0:
            continue
        if indices_by_class is not None:
            indices = indices_by_class[category]
        else:
            indices = class_indices(category, values.size, resamples, seed)
        means = resampled_means(values, indices)
        point = float(np.mean(values[np.isfinite(values)])) if n_finite else float("nan")
        low, high = percentile_interval(means, level)
        result[category] = Interval(point, low, high, n_finite)
        if n_finite:  # a class with no value at all cannot enter the Average
            class_means.append(means)
            point_means.append(point)
    if class_means:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample that drew only NaN values
            average_means = np.nanmean(np.stack(class_means), axis=0)
        low, high = percentile_interval(average_means, level)
        total = sum(interval.n for interval in result.values())
        result[AVERAGE] = Interval(float(np.mean(point_means)), low, high, total)
    return result


def shared_indices(sizes: Mapping[str, int], resamples: int = DEFAULT_RESAMPLES,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Indices for every class of a dataset, drawn once and handed to every model and metric."""
    return {category: class_indices(category, n, resamples, seed) for category, n in sizes.items() if n > 0}


def bootstrap_loop(values: Sequence[float], indices: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The straightforward way, one resample at a time (reference for tests and benchmarks)."""
    means = []
    for row in indices:
        drawn = [values[i] for i in row if np.isfinite(values[i])]
        means.append(sum(drawn) / len(drawn) if drawn else float("nan"))
    return percentile_interval(np.asarray(means), level)
