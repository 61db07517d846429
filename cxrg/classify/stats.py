"""AUROC with ties, its paired stratified bootstrap, and the equal-size mIoU bins (Table 6, Figure 6).

AUROC is the Mann-Whitney probability P(score_pos > score_neg) + 0.5 P(equal), over all (positive run,
negative run) pairs, each pair weighted by the product of the runs' weights (a run drawn twice by a
resample counts twice). With unit weights it is scikit-learn's roc_auc_score.

Bootstrap: the resampling units are positive samples and negative images (a negative image carries all its
location-prompt runs). Positives and negatives are resampled separately (stratified: every resample keeps
the numbers of each), with indices drawn once from (seed, "positive") and (seed, "negative") by
cxrg.bench.bootstrap.class_indices and shared by every strategy, so differences between strategies are
paired. Intervals are percentile intervals (95 % by default).

Bins: the positives are sorted by the strategy's mIoU (ties kept in file order) and cut into a low and a
high half of equal size (with an odd count the middle sample is left out). Negatives have no boxes, so
each bin's AUROC is its positives against all negatives; in a resample both bins see the same resampled
negatives, and each bin's positives are resampled within the bin, so the difference high - low is paired on
the negatives. Its p-value is the two-sided bootstrap p-value (see `bootstrap_p`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cxrg.bench.bootstrap import class_indices, percentile_interval

CHUNK = 500


def auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mann-Whitney AUROC (ties count one half), optionally with one weight per run."""
    scores = np.asarray(scores, dtype=np.float64)
    w = np.ones((1, scores.size)) if weights is None else np.asarray(weights, dtype=np.float64)[None]
    return float(auroc_rows(scores, np.asarray(labels), w)[0])


def auroc_rows(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC for each row of the (rows, runs) weight matrix at once: NaN where a class has no weight.

    Sorted once by score; per row, the negative weight strictly below each tie group and inside it comes
    from one cumulative sum, so a row costs O(runs).
    """
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    positive = np.asarray(labels)[order] == 1
    w = weights[:, order]
    first = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], s.size]
    neg_w = np.where(positive, 0.0, w)
    pos_w = np.where(positive, w, 0.0)
    cumulative = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(neg_w, axis=1)], axis=1)
    below = cumulative[:, starts]
    tied = cumulative[:, ends] - below
    u = (pos_w * (below[:, group] + 0.5 * tied[:, group])).sum(axis=1)
    pairs = pos_w.sum(axis=1) * neg_w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, u / np.where(pairs > 0, pairs, 1.0), np.nan)


def counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(rows, draws) resample indices into 0..n-1 -> (rows, n) how often each unit was drawn."""
    rows = indices.shape[0]
    flat = (np.arange(rows)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'difference = 0': twice the smaller share of resampled differences on
    either side of zero, with the +1 correction so it is never exactly 0, capped at 1."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    below = (1 + np.count_nonzero(d <= 0)) / (d.size + 1)
    above = (1 + np.count_nonzero(d >= 0)) / (d.size + 1)
    return float(min(1.0, 2 * min(below, above)))


@dataclass
class Pools:
    """The scored runs: one label and bootstrap unit per run, one score (and mIoU) array per strategy."""

    labels: np.ndarray
    units: np.ndarray
    """Each run's unit index, numbered within its class (positive samples, negative images)."""
    scores: Mapping[str, np.ndarray]
    miou: Mapping[str, np.ndarray]
    """Per run; NaN for negatives and for strategies without a heatmap."""

    @property
    def n_positive(self) -> int:
        return int(self.units[self.labels == 1].max() + 1) if np.any(self.labels == 1) else 0

    @property
    def n_negative(self) -> int:
        return int(self.units[self.labels == 0].max() + 1) if np.any(self.labels == 0) else 0


def _weights(pools: Pools, pos_counts: np.ndarray, neg_counts: np.ndarray) -> np.ndarray:
    w = np.empty((pos_counts.shape[0], pools.labels.size))
    pos = pools.labels == 1
    w[:, pos] = pos_counts[:, pools.units[pos]]
    w[:, ~pos] = neg_counts[:, pools.units[~pos]]
    return w


def _interval(point: float, resampled: np.ndarray, level: float) -> dict[str, float]:
    low, high = percentile_interval(resampled, level)
    return {"value": point, "ci_low": low, "ci_high": high}


def auroc_summary(pools: Pools, resamples: int, seed: int, level: float = 0.95,
                  reference: str = "none") -> list[dict]:
    """Per strategy: AUROC [CI]; and, when `reference` was run, the paired difference from it [CI] + p."""
    names = list(pools.scores)
    n_pos, n_neg = pools.n_positive, pools.n_negative
    resampled = {name: np.full(resamples, np.nan) for name in names}
    if n_pos and n_neg:
        pos_idx = class_indices("positive", n_pos, resamples, seed)
        neg_idx = class_indices("negative", n_neg, resamples, seed)
        for start in range(0, resamples, CHUNK):
            stop = min(start + CHUNK, resamples)
            w = _weights(pools, counts(pos_idx[start:stop], n_pos), counts(neg_idx[start:stop], n_neg))
            for name in names:
                resampled[name][start:stop] = auroc_rows(pools.scores[name], pools.labels, w)
    out = []
    for name in names:
        point = auroc(pools.scores[name], pools.labels) if n_pos and n_neg else float("nan")
        row: dict = {"strategy": name, **_interval(point, resampled[name], level),
                     "positives": n_pos, "negatives": n_neg,
                     "positive_runs": int(np.sum(pools.labels == 1)),
                     "negative_runs": int(np.sum(pools.labels == 0))}
        if reference in pools.scores and name != reference:
            diff = resampled[name] - resampled[reference]
            ref_point = auroc(pools.scores[reference], pools.labels) if n_pos and n_neg else float("nan")
            low, high = percentile_interval(diff, level)
            row.update({"diff_vs": reference, "diff": point - ref_point, "diff_low": low, "diff_high": high,
                        "diff_p": bootstrap_p(diff)})
        out.append(row)
    return out


def equal_bins(values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the low and the high half, equal in size: sorted by value, ties in input order; with an
    odd count the middle one is in neither."""
    array = np.asarray(values, dtype=np.float64)
    order = np.argsort(array, kind="stable")
    half = array.size // 2
    return order[:half], order[array.size - half:]


def bin_summary(pools: Pools, binned_by: str, scored_by: Sequence[str], resamples: int, seed: int,
                level: float = 0.95) -> list[dict]:
    """Low/high mIoU bins of `binned_by` (its heatmap's mIoU on the positives); for each strategy in
    `scored_by`: the AUROC of each bin [CI] and of high - low [CI] with the bootstrap p-value."""
    positive_runs = np.flatnonzero(pools.labels == 1)
    negative_runs = np.flatnonzero(pools.labels == 0)
    miou = pools.miou[binned_by][positive_runs]
    low, high = equal_bins(miou)
    n_neg = pools.n_negative
    bins = {"low": positive_runs[low], "high": positive_runs[high]}
    resampled = {(s, b): np.full(resamples, np.nan) for s in scored_by for b in bins}
    if len(low) and n_neg:
        neg_idx = class_indices("negative", n_neg, resamples, seed)
        bin_idx = {b: class_indices(f"bin:{binned_by}:{b}", len(runs), resamples, seed)
                   for b, runs in bins.items()}
        for start in range(0, resamples, CHUNK):
            stop = min(start + CHUNK, resamples)
            neg_counts = counts(neg_idx[start:stop], n_neg)
            for b, runs in bins.items():
                keep = np.concatenate([runs, negative_runs])
                w = np.empty((stop - start, keep.size))
                w[:, :runs.size] = counts(bin_idx[b][start:stop], runs.size)
                w[:, runs.size:] = neg_counts[:, pools.units[negative_runs]]
                for s in scored_by:
                    resampled[(s, b)][start:stop] = auroc_rows(pools.scores[s][keep], pools.labels[keep], w)
    out = []
    for s in scored_by:
        points = {}
        for b, runs in bins.items():
            keep = np.concatenate([runs, negative_runs])
            points[b] = (auroc(pools.scores[s][keep], pools.labels[keep])
                         if runs.size and n_neg else float("nan"))
        diff = resampled[(s, "high")] - resampled[(s, "low")]
        d_low, d_high = percentile_interval(diff, level)
        row: dict = {"binned_by": binned_by, "scored_by": s, "per_bin": len(low),
                     "left_out": int(positive_runs.size - 2 * len(low)), "negatives": n_neg,
                     "miou_low_max": float(np.max(miou[low])) if len(low) else float("nan"),
                     "miou_high_min": float(np.min(miou[high])) if len(high) else float("nan")}
        for b in bins:
            interval = _interval(points[b], resampled[(s, b)], level)
            row.update({f"{b}": interval["value"], f"{b}_low": interval["ci_low"],
                        f"{b}_high": interval["ci_high"]})
        row.update({"diff": points["high"] - points["low"], "diff_low": d_low, "diff_high": d_high,
                    "p": bootstrap_p(diff)})
        out.append(row)
    return out
