"""The oracle: a Gaussian on each ground-truth box (paper Appendix F), the ceiling for box-shaped findings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrg import __version__
from cxrg.registry import HeatmapQuery, ModelCard


def box_gaussians(boxes_xyxy: np.ndarray, shape: tuple[int, int], sigma_divisor: float = 3.0) -> np.ndarray:
    """Max over boxes of exp(-((x-mu_x)^2/(2 sx^2) + (y-mu_y)^2/(2 sy^2))), mu = centre, s = extent/divisor.

    Evaluated at pixel centres (x + 0.5) in original pixels; float32, peak 1.
    """
    height, width = shape
    xs = np.arange(width, dtype=np.float64) + 0.5
    ys = np.arange(height, dtype=np.float64) + 0.5
    out = np.zeros((height, width), dtype=np.float32)
    for x0, y0, x1, y1 in np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4):
        sx = max((x1 - x0) / sigma_divisor, 1e-6)
        sy = max((y1 - y0) / sigma_divisor, 1e-6)
        gx = np.exp(-0.5 * ((xs - (x0 + x1) / 2) / sx) ** 2)
        gy = np.exp(-0.5 * ((ys - (y0 + y1) / 2) / sy) ** 2)
        np.maximum(out, np.outer(gy, gx).astype(np.float32), out=out)
    return out


class OracleModel:
    card = ModelCard(
        name="oracle",
        version=__version__,
        licence="Apache-2.0",
        description="Gaussian per ground-truth box (mu = box centre, sigma = extent/3 per axis), max over "
                    "boxes: the paper's oracle (Appendix F). Uses the ground truth; needs no weights.",
        uses_ground_truth=True,
    )

    def load(self, weights_dir: Path | None = None, device: str = "cpu") -> None:
        """Nothing to load."""

    def heatmap(self, query: HeatmapQuery) -> np.ndarray:
        return box_gaussians(query.boxes, query.image.shape[:2])
