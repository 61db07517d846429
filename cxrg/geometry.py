"""Geometry every layer shares: boxes, the model's resize/crop with its exact inverse, box masks, and the
min-max normalisation applied before scoring. numpy (and Pillow for resizing) only; no torch.

Coordinate convention: coordinates are pixel *edges*. Pixel i covers [i, i + 1), so its centre is i + 0.5,
and a box x0, y0, x1, y1 = 0, 0, W, H covers the whole image. Boxes are x, y, w, h in files (MS-CXR) and
x0, y0, x1, y1 in code (`to_xyxy`, `to_xywh`). The model transform maps edges linearly:
x_model = x * scale_x - left, which is exact for any point, so boxes and heatmaps map back without drift.
Resizing uses Pillow's antialiased bilinear filter, which is what
torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False) reproduces
(equal to about 2e-7 on [0, 1] data; the tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["CropGeometry", "ResizeCenterCrop", "boxes_mask", "normalise", "to_xywh", "to_xyxy"]


# ------------------------------------------------------------------------------------------------ boxes


def to_xyxy(xywh: np.ndarray) -> np.ndarray:
    """x, y, w, h (file convention) -> x0, y0, x1, y1 (edges), for (4,) or (N, 4)."""
    b = np.array(xywh, dtype=np.float64)
    b[..., 2:] += b[..., :2]
    return b


def to_xywh(xyxy: np.ndarray) -> np.ndarray:
    """x0, y0, x1, y1 -> x, y, w, h, for (4,) or (N, 4)."""
    b = np.array(xyxy, dtype=np.float64)
    b[..., 2:] -= b[..., :2]
    return b


# -------------------------------------------------------------------------------------- model transform


@dataclass(frozen=True)
class CropGeometry:
    """How one src_h x src_w image maps into the model's size x size input.

    The image is resized to resized_h x resized_w (shortest side = size, the other side rounded half up)
    and the centre crop starts at integer offsets left, top = (resized - size) // 2.
    """

    src_h: int
    src_w: int
    size: int
    resized_h: int
    resized_w: int
    left: int
    top: int

    @property
    def scale_x(self) -> float:
        return self.resized_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.resized_h / self.src_h

    @property
    def source_box(self) -> tuple[float, float, float, float]:
        """The part of the original image (xyxy edges) the model sees."""
        return (self.left / self.scale_x, self.top / self.scale_y,
                (self.left + self.size) / self.scale_x, (self.top + self.size) / self.scale_y)


class ResizeCenterCrop:
    """Resize the shortest side to `size` (antialiased bilinear), centre-crop size x size; and back."""

    def __init__(self, size: int = 512) -> None:
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        self.size = int(size)

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(size={self.size})"

    def geometry(self, h: int, w: int) -> CropGeometry:
        if h < 1 or w < 1:
            raise ValueError(f"image size must be positive, got {h} x {w}")
        s = self.size
        if h <= w:
            rh, rw = s, math.floor(w * s / h + 0.5)
        else:
            rh, rw = math.floor(h * s / w + 0.5), s
        return CropGeometry(src_h=h, src_w=w, size=s, resized_h=rh, resized_w=rw,
                            left=(rw - s) // 2, top=(rh - s) // 2)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """H x W float32 -> size x size float32 (Pillow BILINEAR, antialiased when shrinking)."""
        image = np.asarray(image)
        if image.ndim != 2 or image.size == 0:
            raise ValueError(f"expected a non-empty H x W image, got shape {image.shape}")
        g = self.geometry(*image.shape)
        pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
        resized = np.asarray(pil.resize((g.resized_w, g.resized_h), Image.Resampling.BILINEAR))
        return np.ascontiguousarray(resized[g.top:g.top + g.size, g.left:g.left + g.size])

    # Points and boxes are edge coordinates; nothing is clipped, so the round trip is exact.
    def points_to_model(self, xy: np.ndarray, h: int, w: int) -> np.ndarray:
        g = self.geometry(h, w)
        p = np.array(xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([p[:, 0] * g.scale_x - g.left, p[:, 1] * g.scale_y - g.top], axis=1)

    def points_from_model(self, xy: np.ndarray, h: int, w: int) -> np.ndarray:
        g = self.geometry(h, w)
        p = np.array(xy, dtype=np.float64).reshape(-1, 2)
        return np.stack([(p[:, 0] + g.left) / g.scale_x, (p[:, 1] + g.top) / g.scale_y], axis=1)

    def boxes_to_model(self, boxes_xyxy: np.ndarray, h: int, w: int) -> np.ndarray:
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        return self.points_to_model(b.reshape(-1, 2), h, w).reshape(-1, 4)

    def boxes_from_model(self, boxes_xyxy: np.ndarray, h: int, w: int) -> np.ndarray:
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        return self.points_from_model(b.reshape(-1, 2), h, w).reshape(-1, 4)

    def heatmap_to_image(self, heatmap: np.ndarray, h: int, w: int, mode: str = "bilinear") -> np.ndarray:
        """size x size model-space map -> H x W float32; NaN where a pixel's centre is outside the crop.

        Inside, each original pixel takes the bilinear sample at its centre's model coordinate,
        (x + 0.5) * scale_x - left - 0.5 in model pixel indices (clamped at the border). Bilinear
        sampling on a grid is separable: interpolate columns, then rows. mode="nearest" takes model pixel
        floor(x * scale_x - left) instead, as torch's interpolate(mode="nearest") does (the Vilouras 2024
        evaluation).
        """
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"unknown upsampling mode {mode!r}: bilinear or nearest")
        heat = np.asarray(heatmap, dtype=np.float32)
        if heat.shape != (self.size, self.size):
            raise ValueError(f"heatmap must be {self.size} x {self.size}, got shape {heat.shape}")
        g = self.geometry(h, w)
        cols = _axis_samples(w, g.resized_w, g.left, g.size, mode)
        rows = _axis_samples(h, g.resized_h, g.top, g.size, mode)
        out = np.full((h, w), np.nan, dtype=np.float32)
        if cols is None or rows is None:
            return out
        (c0, c1), (i0, i1, fx) = cols
        (r0, r1), (j0, j1, fy) = rows
        tmp = heat[:, i0] * (1 - fx) + heat[:, i1] * fx  # size x (c1 - c0)
        out[r0:r1, c0:c1] = tmp[j0] * (1 - fy)[:, None] + tmp[j1] * fy[:, None]
        return out


def _axis_samples(n: int, resized: int, offset: int, size: int, mode: str = "bilinear"
                  ) -> tuple[tuple[int, int], tuple] | None:
    """For one axis: the range of source pixels whose centre lands in the crop, and their sample weights.

    Centre of pixel x in model edge units is u = (x + 0.5) * resized / n - offset; it is inside when
    0 <= u < size, tested in integers ((2x + 1) * resized - 2 * offset * n) so borders are exact.
    """
    x = np.arange(n, dtype=np.int64)
    twice = (2 * x + 1) * resized - 2 * offset * n  # 2 * n * u
    inside = np.flatnonzero((twice >= 0) & (twice < 2 * size * n))
    if inside.size == 0:
        return None
    first, last = int(inside[0]), int(inside[-1]) + 1
    if mode == "nearest":
        i = np.clip((x[first:last] * resized) // n - offset, 0, size - 1).astype(np.int64)
        return (first, last), (i, i, np.zeros(i.shape, dtype=np.float32))
    p = (x[first:last] + 0.5) * (resized / n) - offset - 0.5  # model pixel-index coordinate
    p = np.clip(p, 0, size - 1)
    i0 = np.floor(p).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    f = (p - i0).astype(np.float32)
    return (first, last), (i0, i1, f)


# ------------------------------------------------------------------------------------------ masks, scale


def boxes_mask(boxes_xyxy: np.ndarray | Sequence[Sequence[float]], shape: tuple[int, int]) -> np.ndarray:
    """Union of boxes as a boolean mask of `shape`.

    Boxes are xyxy at pixel edges in image pixels; a pixel belongs to a box when its centre lies inside
    (edges rounded to the nearest pixel boundary), and the parts outside the image are clipped away.
    """
    height, width = shape
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4):
        c0, c1 = _clip_span(x0, x1, width)
        r0, r1 = _clip_span(y0, y1, height)
        mask[r0:r1, c0:c1] = True
    return mask


def _clip_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    start = int(np.clip(np.floor(lo + 0.5), 0, size))
    stop = int(np.clip(np.floor(hi + 0.5), 0, size))
    return start, max(start, stop)


def normalise(heatmap: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1], NaN-aware, as float32. A constant map becomes all zeros (NaN kept)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    lo, hi = np.fmin.reduce(heatmap, axis=None), np.fmax.reduce(heatmap, axis=None)  # both skip NaN
    if np.isnan(lo):
        return heatmap.copy()  # all NaN
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ValueError("heatmap contains infinite values")
    span = np.float32(hi - lo)
    if span == 0:
        out = np.zeros_like(heatmap)
        out[np.isnan(heatmap)] = np.nan
        return out
    out = heatmap - np.float32(lo)
    out /= span
    return out


HALF_MAX = 0.5
"""The threshold of the regions cxrg reports: `cxrg ground`'s box and the DICOM SEG's segment."""


def half_max_regions(norm: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected regions of a normalised map at or above HALF_MAX (NaN never inside): (labels, count)."""
    from scipy import ndimage

    labels, count = ndimage.label(np.nan_to_num(norm, nan=-1.0) >= HALF_MAX)
    return labels, int(count)


def largest_region(labels: np.ndarray, count: int) -> int:
    """The label (1..count) of the region with the most pixels, the first on a tie; count must be >= 1."""
    from scipy import ndimage

    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    return int(np.argmax(sizes)) + 1
