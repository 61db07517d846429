"""The regions cxrg reports for a heatmap, as masks and boxes, for the viewer formats.

- `reported_region`: the BINARY segment of a DICOM SEG. By default the largest connected region where the
  min-max normalised map is at or above half its maximum: the region whose bounding box `cxrg ground`
  writes in its JSON (cxrg.grounding.heatmap_summary; the two are tested equal). With `otsu=True` (the
  frozen LDM, whose own post-processing keeps the pixels above Otsu's threshold, docs/ldm.md) the pixels
  above Otsu's threshold of the normalised map.
- `detections`: every connected region at or above half the maximum, as a box (x, y, w, h at pixel edges)
  with a score, the highest normalised value inside it (1.0 for the region holding the peak). A box model
  (MAIRA-2) rasterises its boxes as 1 inside, so each of its boxes comes back as one region of score 1.0
  (boxes that overlap or touch come back as their union's bounding box).
"""

from __future__ import annotations

import numpy as np

from cxrg.geometry import HALF_MAX, half_max_regions, largest_region, normalise

__all__ = ["HALF_MAX", "detections", "reported_region"]


def reported_region(heatmap: np.ndarray, otsu: bool = False) -> np.ndarray:
    """Boolean mask of the region cxrg reports for `heatmap` (see the module docstring); empty when the
    map has no finite value."""
    norm = normalise(heatmap)
    finite = np.isfinite(norm)
    if not finite.any():
        return np.zeros(norm.shape, dtype=bool)
    if otsu:
        from cxrg.ldm.heatmap import otsu_threshold

        return finite & (np.nan_to_num(norm, nan=0.0) > otsu_threshold(norm))
    labels, count = half_max_regions(norm)
    if not count:
        return np.zeros(norm.shape, dtype=bool)
    return labels == largest_region(labels, count)


def detections(heatmap: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """(x, y, w, h, score) of every connected region at or above half the maximum, by score (highest
    first), then by position."""
    from scipy import ndimage

    norm = normalise(heatmap)
    if not np.isfinite(norm).any():
        return []
    labels, count = half_max_regions(norm)
    if not count:
        return []
    peaks = ndimage.maximum(np.nan_to_num(norm, nan=0.0), labels, index=np.arange(1, count + 1))
    out = []
    for region, peak in zip(ndimage.find_objects(labels), np.atleast_1d(peaks), strict=True):
        rows, cols = region
        out.append((float(cols.start), float(rows.start), float(cols.stop - cols.start),
                    float(rows.stop - rows.start), float(peak)))
    return sorted(out, key=lambda d: (-d[4], d[1], d[0]))
