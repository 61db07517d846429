"""Axis-aligned 2-D Gaussians in model space: from boxes (eq. 6), distances (eq. 7), rendering, jitter.

Coordinates are model pixels of the 512 x 512 input at pixel *edges*: x runs 0..512 left to right, y 0..512
top to bottom, and pixel (i, j) covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cxrg.errors import InputError


@dataclass(frozen=True)
class Gaussian2D:
    """An axis-aligned 2-D Gaussian: centre (mu_x, mu_y) and standard deviations (sigma_x, sigma_y), in px."""

    mu_x: float
    mu_y: float
    sigma_x: float
    sigma_y: float

    def __post_init__(self) -> None:
        values = (self.mu_x, self.mu_y, self.sigma_x, self.sigma_y)
        if not all(np.isfinite(v) for v in values) or self.sigma_x <= 0 or self.sigma_y <= 0:
            raise InputError(f"invalid Gaussian {values}", hint="mu must be finite and sigma positive")
        for name, value in zip(("mu_x", "mu_y", "sigma_x", "sigma_y"), values, strict=True):
            object.__setattr__(self, name, float(value))

    @property
    def mu(self) -> np.ndarray:
        return np.array([self.mu_x, self.mu_y])

    @property
    def sigma(self) -> np.ndarray:
        return np.array([self.sigma_x, self.sigma_y])

    def scaled(self, sx: float, sy: float) -> Gaussian2D:
        """The same Gaussian in a frame stretched by (sx, sy)."""
        return Gaussian2D(self.mu_x * sx, self.mu_y * sy, self.sigma_x * sx, self.sigma_y * sy)


def box_gaussian(box_xyxy: Sequence[float], sigma_divisor: float = 6.0) -> Gaussian2D:
    """Eq. 6: mu = the box centre, sigma = the box extent / ``sigma_divisor`` per axis (6 for the LUT, 3 for
    the oracle), so that mu +- 3 sigma spans the box."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    if not (x2 > x1 and y2 > y1):
        raise InputError(f"empty box {box_xyxy}", hint="a box needs x2 > x1 and y2 > y1")
    return Gaussian2D((x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / sigma_divisor, (y2 - y1) / sigma_divisor)


def w2_squared(a: Gaussian2D, b: Gaussian2D) -> float:
    """Eq. 7: squared 2-Wasserstein distance between two axis-aligned Gaussians.

    In general W2^2 = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2). For diagonal
    covariances S = diag(sigma^2) the matrices commute, the trace term is sum(sigma_a^2 + sigma_b^2 -
    2 sigma_a sigma_b) = ||sigma_a - sigma_b||^2, and W2^2 = ||mu_a - mu_b||^2 + ||sigma_a - sigma_b||^2.
    """
    return float(np.sum((a.mu - b.mu) ** 2) + np.sum((a.sigma - b.sigma) ** 2))


def _shape(shape: int | Sequence[int]) -> tuple[int, int]:
    h, w = (shape, shape) if isinstance(shape, int | np.integer) else tuple(shape)
    if int(h) < 1 or int(w) < 1:
        raise InputError(f"invalid map shape {shape}", hint="give a positive size or (height, width)")
    return int(h), int(w)


def render_gaussians(gaussians: Iterable[Gaussian2D], shape: int | Sequence[int],
                     size: float = 512) -> np.ndarray:
    """Draw Gaussians given in a ``size`` x ``size`` frame onto an H x W grid spanning that same frame.

    Each Gaussian is unnormalised, exp(-(dx^2 / 2 sigma_x^2 + dy^2 / 2 sigma_y^2)), so its peak is 1; several
    are combined by the pixel-wise maximum, which keeps the map in [0, 1] and each component's peak at 1
    where components overlap. Values are taken at pixel centres. Returns float32 H x W (zeros if none).
    """
    h, w = _shape(shape)
    xs = (np.arange(w) + 0.5) * (size / w)
    ys = (np.arange(h) + 0.5) * (size / h)
    out = np.zeros((h, w), dtype=np.float64)
    for g in gaussians:
        gx = np.exp(-0.5 * ((xs - g.mu_x) / g.sigma_x) ** 2)
        gy = np.exp(-0.5 * ((ys - g.mu_y) / g.sigma_y) ** 2)
        np.maximum(out, np.outer(gy, gx), out=out)
    return out.astype(np.float32)


def jitter(components: Iterable[Gaussian2D], rng: np.random.Generator, fraction: float = 0.05,
           size: float = 512) -> tuple[Gaussian2D, ...]:
    """Shift each of mu_x, mu_y, sigma_x, sigma_y by an independent uniform draw in +-``fraction * size``.

    At 512 px and 5 % that is +-25.6 px (the paper rounds it to 25 px). Every component is jittered on its
    own. A sigma never falls below half its original value, so it stays positive and a small region keeps a
    visible target.
    """
    bound = fraction * size
    out = []
    for g in components:
        dx, dy, dsx, dsy = rng.uniform(-bound, bound, size=4)
        out.append(Gaussian2D(g.mu_x + dx, g.mu_y + dy,
                              max(g.sigma_x + dsx, g.sigma_x / 2), max(g.sigma_y + dsy, g.sigma_y / 2)))
    return tuple(out)
