"""Scoring and bootstrap speed: the harness's path against the straightforward way, on the same data.

Straightforward way (as in the Vilouras 2024 evaluation code): per sample, build the mask, min-max with
nanmin/nanmax, CNR from masked means and variances, IoU recomputed from full masks at each threshold; the
bootstrap as a Python loop over resamples. Harness path: cxrg.bench.metrics.normalise + score, and the
vectorised bootstrap. Prints both times, the ratios, the machine and the settings; checks the numbers agree.

    python benchmarks/bench_scoring.py [--heatmaps 1000] [--size 1024] [--resamples 10000]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).parent))
import argparse
import os
import platform
import time

import numpy as np
from machine import cpu_model  # noqa: E402

from cxrg.bench import bootstrap, metrics

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion",
           "Pneumonia", "Pneumothorax")




def make_data(n: int, size: int, distinct: int, seed: int = 0):
    """`distinct` smooth random heatmaps (reused round-robin, some with a NaN border) and n box sets."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    maps = []
    for k in range(distinct):
        heat = np.zeros((size, size), np.float32)
        for _ in range(3):
            mx, my, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.2)
            heat += np.exp(-((xx - mx) ** 2 + (yy - my) ** 2) / (2 * s * s))
        heat += 0.05 * rng.standard_normal((size, size)).astype(np.float32)
        if k % 4 == 0:
            heat[:, : size // 16] = np.nan  # outside a model's crop
        maps.append(heat)
    boxes = []
    for _ in range(n):
        count = rng.integers(1, 3)
        x0, y0 = rng.uniform(0, 0.7 * size, count), rng.uniform(0, 0.7 * size, count)
        w, h = rng.uniform(0.05, 0.3, count) * size, rng.uniform(0.05, 0.3, count) * size
        boxes.append(np.stack([x0, y0, x0 + w, y0 + h], axis=1))
    labels = rng.integers(0, len(CLASSES), n)
    return maps, boxes, labels


def straightforward_score(heatmap: np.ndarray, boxes: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanmin(heatmap), np.nanmax(heatmap)
    norm = ((heatmap - lo) / (hi - lo)).astype(np.float32)
    mask = metrics.boxes_mask(boxes, norm.shape)
    inside, outside = norm[mask], norm[~mask]
    mu_in, mu_out = np.nanmean(inside.astype(np.float64)), np.nanmean(outside.astype(np.float64))
    var_in, var_out = np.nanvar(inside.astype(np.float64)), np.nanvar(outside.astype(np.float64))
    cnr = (mu_in - mu_out) / np.sqrt(var_in + var_out)
    ious = []
    for t in THRESHOLDS:
        predicted = norm > t
        ious.append(np.logical_and(predicted, mask).sum() / np.logical_or(predicted, mask).sum())
    return float(cnr), float(np.mean(ious))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heatmaps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--distinct", type=int, default=40)
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {cpu_model()} cpus={os.cpu_count()} "
          f"python={platform.python_version()} numpy={np.__version__}")
    print(f"settings: {args.heatmaps} heatmaps of {args.size}x{args.size} ({args.distinct} distinct, 1 in 4 "
          f"with NaN), {len(CLASSES)} classes x 2 metrics x {args.resamples} resamples")
    maps, boxes, labels = make_data(args.heatmaps, args.size, args.distinct)

    started = time.perf_counter()
    slow = [straightforward_score(maps[i % len(maps)], boxes[i]) for i in range(args.heatmaps)]
    slow_scoring = time.perf_counter() - started

    started = time.perf_counter()
    fast = [metrics.score(metrics.normalise(maps[i % len(maps)]), boxes[i]) for i in range(args.heatmaps)]
    fast_scoring = time.perf_counter() - started

    slow_arr, fast_arr = np.array(slow), np.array(fast)
    max_diff = float(np.max(np.abs(slow_arr - fast_arr)))
    assert np.allclose(slow_arr[:, 0], fast_arr[:, 0], rtol=1e-9, atol=1e-12), "CNR differs"
    assert np.array_equal(slow_arr[:, 1], fast_arr[:, 1]), "mIoU differs"

    per_class = {c: np.flatnonzero(labels == k) for k, c in enumerate(CLASSES)}
    indices = bootstrap.shared_indices({c: len(ix) for c, ix in per_class.items()}, args.resamples, seed=0)
    started = time.perf_counter()
    slow_ci = {}
    for c, ix in per_class.items():
        for m in range(2):
            slow_ci[(c, m)] = bootstrap.bootstrap_loop(list(fast_arr[ix, m]), indices[c])
    slow_boot = time.perf_counter() - started

    started = time.perf_counter()
    fast_ci = {}
    for m in range(2):
        stats = bootstrap.bootstrap_classes({c: fast_arr[ix, m] for c, ix in per_class.items()},
                                            indices_by_class=indices)
        for c in CLASSES:
            fast_ci[(c, m)] = (stats[c].low, stats[c].high)
    fast_boot = time.perf_counter() - started
    assert all(np.allclose(slow_ci[k], fast_ci[k], rtol=1e-12) for k in slow_ci), "bootstrap CI differs"

    slow_total, fast_total = slow_scoring + slow_boot, fast_scoring + fast_boot
    print(f"numbers: CNR equal to rtol 1e-9 (max |diff| {max_diff:.2e}), mIoU identical, CIs equal")
    print(f"{'step':<12}{'straightforward s':>20}{'cxrg s':>10}{'ratio':>8}")
    print(f"{'scoring':<12}{slow_scoring:>20.2f}{fast_scoring:>10.2f}{slow_scoring / fast_scoring:>8.1f}x"
          f"   ({args.heatmaps / fast_scoring:.0f} heatmaps/s vs {args.heatmaps / slow_scoring:.0f})")
    print(f"{'bootstrap':<12}{slow_boot:>20.2f}{fast_boot:>10.2f}{slow_boot / fast_boot:>8.1f}x")
    print(f"{'whole':<12}{slow_total:>20.2f}{fast_total:>10.2f}{slow_total / fast_total:>8.1f}x")


if __name__ == "__main__":
    main()
