"""AUROC, its paired bootstrap and the mIoU bins of `cxrg classify`, against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrg.bench.bootstrap import class_indices, percentile_interval
from cxrg.classify.stats import (
    Pools,
    auroc,
    auroc_rows,
    auroc_summary,
    bin_summary,
    bootstrap_p,
    counts,
    equal_bins,
)


def test_auroc_hand_example_with_ties():
    # pairs (pos, neg): (.9,.5)=1 (.9,.1)=1 (.5,.5)=.5 (.5,.1)=1 (.5,.5)=.5 (.5,.1)=1 -> 5 of 6
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 1, 0, 0])
    assert auroc(scores, labels) == pytest.approx(5 / 6, abs=1e-15)
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-15)
    assert auroc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5  # all tied
    assert auroc(np.array([0.2, 0.1]), np.array([0, 1])) == 0.0
    assert np.isnan(auroc(np.array([0.2, 0.1]), np.array([1, 1])))  # no negative


def test_auroc_matches_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(4, 60))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 6, n).astype(float)  # many ties
        weights = rng.integers(0, 4, n).astype(float)
        weights[:2] = 1
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert auroc(scores, labels, weights) == pytest.approx(
            roc_auc_score(labels, scores, sample_weight=weights), abs=1e-12)


def _pools(rng, n_pos=6, n_neg=4, runs_per_negative=3) -> Pools:
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg * runs_per_negative, int)]
    units = np.r_[np.arange(n_pos), np.repeat(np.arange(n_neg), runs_per_negative)]
    scores = {"none": np.round(rng.normal(size=labels.size) + labels, 1),
              "tuned": np.round(rng.normal(size=labels.size) + 2 * labels, 1)}
    miou = {"none": np.full(labels.size, np.nan),
            "tuned": np.where(labels == 1, rng.random(labels.size), np.nan)}
    return Pools(labels, units, scores, miou)


def test_resampled_auroc_is_sklearn_on_the_resampled_runs():
    rng = np.random.default_rng(0)
    pools = _pools(rng)
    pos_idx = class_indices("positive", 6, 50, seed=7)
    neg_idx = class_indices("negative", 4, 50, seed=7)
    pos_counts, neg_counts = counts(pos_idx, 6), counts(neg_idx, 4)
    assert pos_counts.sum(axis=1).tolist() == [6] * 50 and neg_counts.sum(axis=1).tolist() == [4] * 50
    weights = np.c_[pos_counts, np.repeat(neg_counts, 3, axis=1)]
    fast = auroc_rows(pools.scores["tuned"], pools.labels, weights)
    for r in range(50):
        # the resample written out: each drawn positive once per draw, each drawn negative with all its runs
        runs = list(pos_idx[r]) + [6 + 3 * u + k for u in neg_idx[r] for k in range(3)]
        expected = roc_auc_score(pools.labels[runs], pools.scores["tuned"][runs])
        assert fast[r] == pytest.approx(expected, abs=1e-12)


def test_summary_intervals_are_percentiles_of_the_shared_resamples():
    rng = np.random.default_rng(1)
    pools = _pools(rng)
    rows = auroc_summary(pools, resamples=300, seed=5)
    pos_idx = class_indices("positive", 6, 300, seed=5)
    neg_idx = class_indices("negative", 4, 300, seed=5)
    per_strategy = {}
    for name in ("none", "tuned"):
        values = []
        for r in range(300):
            runs = list(pos_idx[r]) + [6 + 3 * u + k for u in neg_idx[r] for k in range(3)]
            values.append(roc_auc_score(pools.labels[runs], pools.scores[name][runs]))
        per_strategy[name] = np.array(values)
    none, tuned = rows
    assert none["value"] == pytest.approx(roc_auc_score(pools.labels, pools.scores["none"]))
    assert (none["ci_low"], none["ci_high"]) == pytest.approx(percentile_interval(per_strategy["none"]))
    assert (tuned["ci_low"], tuned["ci_high"]) == pytest.approx(percentile_interval(per_strategy["tuned"]))
    paired = per_strategy["tuned"] - per_strategy["none"]
    assert (tuned["diff_low"], tuned["diff_high"]) == pytest.approx(percentile_interval(paired))
    assert tuned["diff_p"] == pytest.approx(bootstrap_p(paired))
    assert tuned["positives"] == 6 and tuned["negatives"] == 4 and tuned["negative_runs"] == 12
    assert "diff" not in none


def test_repeated_negative_runs_do_not_change_auroc():
    rng = np.random.default_rng(2)
    scores_pos, scores_neg = rng.normal(size=5), rng.normal(size=7)
    once = auroc(np.r_[scores_pos, scores_neg], np.r_[np.ones(5), np.zeros(7)])
    four = auroc(np.r_[scores_pos, np.repeat(scores_neg, 4)], np.r_[np.ones(5), np.zeros(28)])
    assert once == pytest.approx(four, abs=1e-15)


def test_equal_bins_by_hand():
    low, high = equal_bins([0.3, 0.1, 0.5, 0.1, 0.9])
    assert low.tolist() == [1, 3] and high.tolist() == [2, 4]  # 0.3 (the middle one) is in neither
    low, high = equal_bins([0.2, 0.2, 0.2, 0.2])
    assert low.tolist() == [0, 1] and high.tolist() == [2, 3]  # ties: file order
    low, high = equal_bins([0.5])
    assert low.size == 0 and high.size == 0


def test_bin_summary_by_hand():
    # five positives; the two with the highest mIoU are well separated from the negatives, the two lowest not
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    units = np.array([0, 1, 2, 3, 4, 0, 0, 1, 1, 2, 2])
    scores = np.array([0.1, 0.2, 5.0, 0.3, 6.0, 0.15, 0.25, 0.05, 0.4, 0.35, 0.2])
    miou = np.array([0.05, 0.10, 0.60, 0.30, 0.80] + [np.nan] * 6)
    pools = Pools(labels, units, {"location": scores, "none": scores[::-1].copy()},
                  {"location": miou, "none": np.full(11, np.nan)})
    rows = bin_summary(pools, "location", ["location", "none"], resamples=2000, seed=0)
    own, plain = rows
    negatives = [5, 6, 7, 8, 9, 10]
    low_runs, high_runs = [0, 1] + negatives, [2, 4] + negatives  # positive 3 (mIoU 0.3) is the middle one
    assert own["per_bin"] == 2 and own["left_out"] == 1 and own["negatives"] == 3
    assert own["miou_low_max"] == pytest.approx(0.10) and own["miou_high_min"] == pytest.approx(0.60)
    assert own["low"] == pytest.approx(roc_auc_score(labels[low_runs], scores[low_runs]))
    assert own["high"] == 1.0
    assert own["diff"] == pytest.approx(1.0 - own["low"])
    assert own["diff_low"] > 0 and own["p"] < 0.05
    assert plain["scored_by"] == "none"
    assert plain["low"] == pytest.approx(roc_auc_score(labels[low_runs], pools.scores["none"][low_runs]))
    assert plain["high"] == pytest.approx(roc_auc_score(labels[high_runs], pools.scores["none"][high_runs]))


def test_bootstrap_p_by_hand():
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(0.8)  # 2 * (1 + 1) / 5
    assert bootstrap_p(np.ones(999)) == pytest.approx(2 / 1000)
    assert bootstrap_p(np.zeros(10)) == 1.0
    assert np.isnan(bootstrap_p(np.array([np.nan])))
