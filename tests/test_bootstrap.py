"""The vectorised, paired bootstrap against a slow loop over the same indices, and its invariants."""

from __future__ import annotations

import numpy as np
import pytest

from cxrg.bench.bootstrap import (
    AVERAGE,
    bootstrap_classes,
    bootstrap_loop,
    class_indices,
    percentile_interval,
    resampled_means,
    shared_indices,
)


def test_vectorised_equals_loop_on_the_same_indices():
    rng = np.random.default_rng(0)
    values = rng.normal(0.4, 0.2, size=37)
    values[[3, 17]] = np.nan  # failed samples: left out of each resample's mean
    indices = class_indices("Pneumonia", values.size, 2000, seed=7)
    means = resampled_means(values, indices)
    loop_means = np.array([np.nanmean(values[row]) if np.isfinite(values[row]).any() else np.nan
                           for row in indices])
    np.testing.assert_allclose(means, loop_means, rtol=1e-12)
    assert percentile_interval(means) == pytest.approx(bootstrap_loop(list(values), indices), rel=1e-12)


def test_percentile_interval_hand_example():
    # numpy's linear percentile of 0..100: 2.5 and 97.5
    assert percentile_interval(np.arange(101, dtype=float)) == pytest.approx((2.5, 97.5), abs=1e-12)


def test_indices_are_seeded_shared_and_per_class():
    a = class_indices("Edema", 10, 50, seed=1)
    assert np.array_equal(a, class_indices("Edema", 10, 50, seed=1))
    assert not np.array_equal(a, class_indices("Edema", 10, 50, seed=2))
    assert not np.array_equal(a, class_indices("Atelectasis", 10, 50, seed=1))
    assert a.shape == (50, 10) and a.min() >= 0 and a.max() < 10


def test_models_are_paired():
    """Two models whose values differ by a constant have CIs that differ by exactly that constant."""
    rng = np.random.default_rng(1)
    base = {"A": rng.random(20), "B": rng.random(30)}
    shifted = {c: v + 0.25 for c, v in base.items()}
    indices = shared_indices({c: v.size for c, v in base.items()}, 1000, seed=3)
    first = bootstrap_classes(base, indices_by_class=indices)
    second = bootstrap_classes(shifted, indices_by_class=indices)
    for category in ("A", "B", AVERAGE):
        assert second[category].low == pytest.approx(first[category].low + 0.25)
        assert second[category].high == pytest.approx(first[category].high + 0.25)


def test_average_row_is_mean_of_class_means():
    values = {"A": np.array([0.0, 1.0]), "B": np.array([1.0, 1.0, 1.0, 1.0])}
    result = bootstrap_classes(values, resamples=500, seed=0)
    assert result["A"].mean == 0.5 and result["B"].mean == 1.0
    assert result[AVERAGE].mean == 0.75  # not the pooled mean 5/6
    assert result[AVERAGE].n == 6
    # the Average CI comes from averaging the class means of the same resample
    ia, ib = class_indices("A", 2, 500, 0), class_indices("B", 4, 500, 0)
    average = (values["A"][ia].mean(1) + values["B"][ib].mean(1)) / 2
    assert (result[AVERAGE].low, result[AVERAGE].high) == percentile_interval(average)


def test_a_class_without_values_is_left_out_of_the_average():
    result = bootstrap_classes({"A": np.array([0.2, 0.4]), "B": np.array([np.nan, np.nan])}, resamples=100)
    assert np.isnan(result["B"].mean) and result["B"].n == 0
    assert result[AVERAGE].mean == pytest.approx(0.3) and result[AVERAGE].n == 2


def test_constant_values_collapse_the_interval_and_nan_is_counted_out():
    result = bootstrap_classes({"A": np.array([0.3, 0.3, np.nan, 0.3])}, resamples=200, seed=0)
    assert result["A"].mean == pytest.approx(0.3)
    assert result["A"].low == pytest.approx(0.3) and result["A"].high == pytest.approx(0.3)
    assert result["A"].n == 3


def test_interval_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(5)
    small = bootstrap_classes({"A": rng.normal(size=20)}, seed=0)["A"]
    large = bootstrap_classes({"A": rng.normal(size=2000)}, seed=0)["A"]
    assert small.low < small.mean < small.high
    assert (large.high - large.low) < (small.high - small.low) / 5
