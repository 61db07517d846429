"""Phrase-grounding metrics: CNR and mIoU, exactly as defined in the paper.

Definitions (on the heatmap as given; the harness min-max normalises first, see `normalise`):

- CNR = (mean_in - mean_out) / sqrt(var_in + var_out), signed, population variances, NaN pixels ignored.
  "in" is the union of the sample's boxes (the mask), "out" everything else.
  Edge cases: no contrast at all (constant over the valid pixels, or zero variance on both sides with equal
  means) -> 0.0; undefined (no valid pixel inside or outside the mask, e.g. an all-NaN heatmap or a box
  covering the whole image; or zero variance on both sides with different means, which would be +-inf)
  -> NaN. The harness excludes NaN values from the statistics and reports how many there were. (The
  Vilouras 2024 evaluation code turns such values into 0 with `nan_to_num`; we keep them visible instead.)
- mIoU = mean over thresholds t of IoU(heatmap > t, mask); the comparison is strict, NaN pixels are never
  "> t" so they count as not predicted. An empty mask is an error (a sample must have a box in the image).
  One NaN policy for both metrics: a heatmap with no valid pixel at all (all NaN) is undefined for CNR and
  for mIoU (cxrg 0.1 scored its mIoU as 0).

`score` computes both in one pass over the pixels and is what the harness uses; `cnr` and `miou` are the
same numbers computed the plain way (tests hold them equal).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrg.geometry import _clip_span, boxes_mask, normalise  # noqa: F401  (kept importable from here)

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


def cnr(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Signed contrast-to-noise ratio between the mask and the rest; see the module docstring."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    mask = _check_mask(mask, heatmap.shape)
    valid = ~np.isnan(heatmap)
    inside = heatmap[mask & valid]
    outside = heatmap[~mask & valid]
    if inside.size == 0 or outside.size == 0:
        return float("nan")
    return _cnr_from_moments(inside.mean(), inside.var(), outside.mean(), outside.var())


def miou(heatmap: np.ndarray, mask: np.ndarray,
         thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> float:
    """Mean over thresholds of IoU(heatmap > t, mask); NaN pixels count as not predicted; a map without
    any valid pixel is undefined (NaN), like its CNR."""
    heatmap = np.asarray(heatmap)
    mask = _check_mask(mask, heatmap.shape)
    if not np.isfinite(heatmap).any():
        return float("nan")
    if not mask.any():
        raise ValueError("mask is empty: the sample has no box inside the image")
    ious = []
    for t in thresholds:
        predicted = heatmap > t
        ious.append(np.count_nonzero(predicted & mask) / np.count_nonzero(predicted | mask))
    return float(np.mean(ious))


def score(heatmap: np.ndarray, boxes_xyxy: np.ndarray,
          thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> tuple[float, float]:
    """(CNR, mIoU) of a heatmap against the union of its boxes: the harness's fast path.

    Same numbers as `cnr(h, m)` and `miou(h, m)` with `m = boxes_mask(boxes, h.shape)`, but computed from
    whole-image sums and the sums inside the boxes' bounding window only, so a sample costs a few passes
    over the pixels instead of a dozen. Sums are accumulated in float64; NaN pixels are set to 0 for the
    sums and counted out.
    """
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heatmap.shape}")
    height, width = heatmap.shape
    spans = [(_clip_span(x0, x1, width), _clip_span(y0, y1, height))
             for x0, y0, x1, y1 in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)]
    spans = [(cols, rows) for cols, rows in spans if cols[1] > cols[0] and rows[1] > rows[0]]
    if not spans:
        raise ValueError("mask is empty: the sample has no box inside the image")
    c0, c1 = min(c[0] for c, _ in spans), max(c[1] for c, _ in spans)
    r0, r1 = min(r[0] for _, r in spans), max(r[1] for _, r in spans)
    sub_mask = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for (x_start, x_stop), (y_start, y_stop) in spans:
        sub_mask[y_start - r0:y_stop - r0, x_start - c0:x_stop - c0] = True
    inside = heatmap[r0:r1, c0:c1][sub_mask]
    mask_count = inside.size

    flat = heatmap.reshape(-1)
    total_n, total_sum, total_sq = _moments(flat)
    inside = inside[~np.isnan(inside)]
    _, in_sum, in_sq = _moments(inside)
    if total_n == 0:
        cnr_value = float("nan")
    else:
        cnr_value = _cnr_from_sums(inside.size, in_sum, in_sq, total_n - inside.size, total_sum - in_sum,
                                   total_sq - in_sq, inside, flat)

    if total_n == 0:
        return float("nan"), float("nan")  # no valid pixel: both metrics undefined
    ious = []
    for t in thresholds:
        predicted = int(np.count_nonzero(flat > t))
        hit = int(np.count_nonzero(inside > t))
        ious.append(hit / (predicted + mask_count - hit))
    return cnr_value, float(np.mean(ious))


def _moments(values: np.ndarray, chunk: int = 1 << 16) -> tuple[int, float, float]:
    """(count, sum, sum of squares) of the non-NaN values, in float64.

    Works through a small float64 buffer chunk by chunk: the same sums as a whole-array float64 copy
    to rounding (about 1e-16 relative), at half the cost, because the buffer stays in cache.
    """
    buffer = np.empty(min(chunk, values.size), dtype=np.float64)
    count, total, squares = 0, 0.0, 0.0
    for start in range(0, values.size, chunk):
        part = buffer[: min(chunk, values.size - start)]
        np.copyto(part, values[start:start + chunk])
        part_sum = float(part.sum())
        part_count = part.size
        if np.isnan(part_sum):
            nan = np.isnan(part)
            part[nan] = 0.0
            part_count -= int(np.count_nonzero(nan))
            part_sum = float(part.sum())
        np.multiply(part, part, out=part)
        count += part_count
        total += part_sum
        squares += float(part.sum())
    return count, total, squares


def _cnr_from_sums(in_n, in_sum, in_sq, out_n, out_sum, out_sq, inside, everything) -> float:
    if in_n == 0 or out_n == 0:
        return float("nan")
    mean_in, mean_out = in_sum / in_n, out_sum / out_n
    var_in = max(in_sq / in_n - mean_in * mean_in, 0.0)
    var_out = max(out_sq / out_n - mean_out * mean_out, 0.0)
    # E[x^2] - E[x]^2 cancels badly when the spread is tiny next to the mean; fall back to two passes then.
    scale = max(mean_in * mean_in, mean_out * mean_out, 1e-300)
    if min(var_in, var_out) < 1e-6 * scale:
        return _two_pass_cnr(inside, everything)
    return _cnr_from_moments(mean_in, var_in, mean_out, var_out)


def _two_pass_cnr(inside: np.ndarray, everything: np.ndarray) -> float:
    """Exact fallback: means first, then squared deviations (used only in ill-conditioned cases)."""
    inside = inside.astype(np.float64)
    everything = everything[~np.isnan(everything)].astype(np.float64)
    total_n, in_n = everything.size, inside.size
    mean_in = inside.mean()
    mean_out = (everything.sum() - inside.sum()) / (total_n - in_n)
    var_in = np.mean((inside - mean_in) ** 2)
    dev_all = np.sum((everything - mean_out) ** 2)
    dev_in_about_out = np.sum((inside - mean_out) ** 2)
    var_out = max(dev_all - dev_in_about_out, 0.0) / (total_n - in_n)
    return _cnr_from_moments(mean_in, var_in, mean_out, var_out)


def _cnr_from_moments(mean_in: float, var_in: float, mean_out: float, var_out: float) -> float:
    diff = float(mean_in - mean_out)
    spread = float(var_in + var_out)
    if spread <= 0.0:
        return 0.0 if diff == 0.0 else float("nan")
    return diff / float(np.sqrt(spread))


def _check_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} does not match heatmap shape {shape}")
    return mask
