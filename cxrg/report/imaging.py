"""The report's pictures: display-windowed radiographs, heatmap overlays and Otsu masks, as small files.

- Radiograph: read as the bench read it (cxrg.images; JPEGs are decoded at a reduced scale, which is all a
  thumbnail needs), reduced so its longer side is LARGE_SIDE, then windowed for display: the 0.5th to
  99.5th percentile of its pixels stretched to black..white (a burnt-in label or a dark border no longer
  sets the contrast). A THUMB_SIDE copy is made from the same windowed picture. JPEG, quality 85.
- Heatmap overlay: the saved map (as scored: min-max normalised; at most 256 px) in the jet colour map, as
  a palette PNG at the saved map's own size; its opacity grows with the value (0 at 0, full from 2/3
  up, so cold regions leave the radiograph readable; the page's slider scales it). The page stretches it
  over the radiograph's box, so both share one geometry: original image pixels, the same frame the boxes
  are in (an SVG with the original size as its viewBox).
- NaN (the model saw no pixel there): black and white diagonal hatching, opaque, in both the overlay and
  the mask, so "no value" never reads as "cold".
- Otsu mask: white where the saved map is above its Otsu threshold (cxrg.ldm.heatmap.otsu_threshold, the
  one the LDM pipeline uses), black below; computed on the saved (reduced) map.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

THUMB_SIDE = 160
LARGE_SIDE = 640
WINDOW = (0.5, 99.5)
JPEG_QUALITY = 85
HATCH_PERIOD = 8
NAN_DARK = (0, 0, 0, 255)
NAN_LIGHT = (255, 255, 255, 255)


def window(image: np.ndarray, percentiles: tuple[float, float] = WINDOW) -> np.ndarray:
    """Percentile display window: uint8 with the `percentiles` of the finite pixels at 0 and 255."""
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape, np.uint8)
    low, high = np.percentile(finite, percentiles)
    if high <= low:
        high = low + 1e-6
    scaled = (np.nan_to_num(image, nan=float(low)) - low) * (255.0 / (high - low))
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def read_for_display(path: Path, side: int = LARGE_SIDE) -> tuple[np.ndarray, tuple[int, int]]:
    """(grey float32 in [0, 1], longer side at most about `side`; the file's original (height, width)).
    JPEGs are decoded at a reduced DCT scale (the decoder's draft mode); everything else by read_image."""
    from cxrg.images import image_size, read_image

    path = Path(path)
    original = image_size(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        try:
            with Image.open(path) as im:
                if im.format == "JPEG" and im.mode in ("L", "RGB"):
                    im.draft("L", (side, side))
                    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0, original
        except OSError:
            pass  # read_image says what is wrong with the file
    return read_image(path), original


def _resize(pixels: np.ndarray, side: int) -> Image.Image:
    im = Image.fromarray(pixels)
    scale = side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.Resampling.LANCZOS)
    return im


def radiograph_jpegs(path: Path) -> tuple[bytes, bytes, tuple[int, int]]:
    """(thumbnail JPEG, large JPEG, original (height, width)) of one radiograph, display-windowed."""
    grey, original = read_for_display(path, LARGE_SIDE)
    if max(grey.shape) > LARGE_SIDE:  # reduce before windowing: the percentiles of what is shown
        reduced = Image.fromarray(grey.astype(np.float32), mode="F")
        scale = LARGE_SIDE / max(grey.shape)
        reduced = reduced.resize((max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale))),
                                 Image.Resampling.BOX)
        grey = np.asarray(reduced, dtype=np.float32)
    shown = window(grey)
    return _jpeg(_resize(shown, THUMB_SIDE)), _jpeg(_resize(shown, LARGE_SIDE)), original


def _jpeg(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    """RGBA (H x W x 4) or grey (H x W) uint8 -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def _jet() -> np.ndarray:
    """The jet colour map as a 256 x 3 uint8 table (matplotlib's, read once)."""
    import matplotlib

    return (matplotlib.colormaps["jet"](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def nan_hatch(shape: tuple[int, int]) -> np.ndarray:
    """H x W bool: True on the dark stripes of the NaN hatching (diagonal, period HATCH_PERIOD px)."""
    yy, xx = np.indices(shape)
    return ((xx + yy) // (HATCH_PERIOD // 2)) % 2 == 0


def _mark_nan(rgba: np.ndarray, heat: np.ndarray) -> np.ndarray:
    missing = ~np.isfinite(heat)
    if missing.any():
        dark = nan_hatch(heat.shape)
        rgba[missing & dark] = NAN_DARK
        rgba[missing & ~dark] = NAN_LIGHT
    return rgba


def heat_rgba(heat: np.ndarray) -> np.ndarray:
    """The saved map -> H x W x 4 uint8: jet colour, alpha from 0 (value 0) to 255 (values from 2/3 up),
    NaN hatched (opaque)."""
    heat = np.asarray(heat, dtype=np.float32)
    values = np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)
    index = (values * 255 + 0.5).astype(np.uint8)
    rgba = np.empty((*heat.shape, 4), np.uint8)
    rgba[..., :3] = _jet()[index]
    rgba[..., 3] = (255 * heat_alpha(values) + 0.5).astype(np.uint8)
    return _mark_nan(rgba, heat)


def heat_alpha(values: np.ndarray) -> np.ndarray:
    """Opacity of a [0, 1] heatmap value over the film: 0 at 0, rising linearly, full from 2/3 up, so cold
    regions leave the radiograph readable (the report's and the rating page's overlays share it)."""
    return np.minimum(1.0, 1.5 * np.clip(values, 0.0, 1.0))


def otsu_mask(heat: np.ndarray) -> tuple[np.ndarray, float]:
    """(bool mask of the finite values above the Otsu threshold, the threshold)."""
    from cxrg.ldm.heatmap import otsu_threshold

    heat = np.asarray(heat, dtype=np.float32)
    threshold = otsu_threshold(heat)
    with np.errstate(invalid="ignore"):
        return np.isfinite(heat) & (heat > threshold), threshold


def mask_rgba(heat: np.ndarray) -> tuple[np.ndarray, float]:
    """The Otsu mask as H x W x 4 uint8 (white above, black below, NaN hatched) and its threshold."""
    mask, threshold = otsu_mask(heat)
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[mask, :3] = 255
    return _mark_nan(rgba, np.asarray(heat, dtype=np.float32)), threshold


LEVELS = 254
"""Overlay PNGs are palette images: indices 0..253 for the values 0..1, two more for the NaN hatching."""


@lru_cache(maxsize=1)
def _palette() -> tuple[list[int], bytes]:
    """(RGB palette, per-index alpha) for the palette overlay: the same colours and alpha as heat_rgba."""
    values = np.linspace(0, 1, LEVELS)
    rgba = heat_rgba(values.reshape(1, -1).astype(np.float32))[0]
    colours = [*rgba[:, :3].ravel().tolist(), *NAN_DARK[:3], *NAN_LIGHT[:3]]
    alpha = bytes([*rgba[:, 3].tolist(), NAN_DARK[3], NAN_LIGHT[3]])
    return colours, alpha


def heat_png(heat: np.ndarray) -> bytes:
    """The overlay as a palette PNG (one byte a pixel; what heat_rgba draws, values in LEVELS steps)."""
    heat = np.asarray(heat, dtype=np.float32)
    values = np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)
    index = (values * (LEVELS - 1) + 0.5).astype(np.uint8)
    missing = ~np.isfinite(heat)
    if missing.any():
        dark = nan_hatch(heat.shape)
        index[missing & dark] = LEVELS
        index[missing & ~dark] = LEVELS + 1
    colours, alpha = _palette()
    im = Image.frombytes("P", (index.shape[1], index.shape[0]), np.ascontiguousarray(index).tobytes())
    im.putpalette(colours)
    buffer = io.BytesIO()
    im.save(buffer, format="PNG", transparency=alpha, optimize=False, compress_level=6)
    return buffer.getvalue()


def heat_pngs(heat: np.ndarray) -> tuple[bytes, bytes, float]:
    """(overlay PNG, Otsu mask PNG (1 bit a pixel), Otsu threshold) of one saved map."""
    mask, threshold = mask_rgba(heat)
    buffer = io.BytesIO()
    Image.fromarray(mask[..., 0] > 127).save(buffer, format="PNG", compress_level=6)  # black and white only
    return heat_png(heat), buffer.getvalue(), threshold
