"""The atlas figure (the paper's Figure 3): every location's target drawn over a chest radiograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrg.anatomy.lut import Lut
from cxrg.errors import InputError
from cxrg.geometry import ResizeCenterCrop
from cxrg.runs import save_figure
from cxrg.vocab import SIDES, UNPAIRED, ZONES, location_name

COLUMNS = 8
DISPLAY = 256  # panel resolution: enough for a panel about 2 inches wide


def _rows() -> list[list[str]]:
    """One row per side (left, right, bilateral; zones in order), then the unpaired locations."""
    return [[location_name(side, zone) for zone in ZONES] for side in SIDES] + [list(UNPAIRED)]


def draw_atlas(lut: Lut, image: np.ndarray | None, out_png: str | Path, dpi: int = 100) -> Path:
    """Write a PNG with one panel per location: the LUT target over ``image`` (H x W in [0, 1], shown as
    the model sees it: shortest side to the LUT size, centre crop), or over a dark frame when ``image`` is
    None. Each component's centre is marked with a cross and its 2-sigma ellipse dashed. Returns the path."""
    from matplotlib import colormaps  # lazily: the CLI starts without matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    size = lut.size
    shown = min(size, DISPLAY)  # pixels drawn per panel side; coordinates stay in the LUT frame
    if image is None:
        background = np.full((shown, shown), 0.15, dtype=np.float32)
    else:
        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2 or image.size == 0:
            raise InputError(f"atlas background must be a grey H x W image, got shape {image.shape}")
        background = ResizeCenterCrop(size)(image)
        background = ResizeCenterCrop(shown)(background) if shown != size else background
    grey = np.repeat(np.clip(background, 0, 1)[..., None], 3, axis=2)

    rows = _rows()
    fig = Figure(figsize=(2.2 * COLUMNS, 2.4 * len(rows) + 0.6), dpi=dpi)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.9, wspace=0.05, hspace=0.15)
    extent = (0, size, size, 0)  # model pixel edges: x right, y down
    for r, row in enumerate(rows):
        for c, location in enumerate(row):
            ax = fig.add_subplot(len(rows), COLUMNS, r * COLUMNS + c + 1)
            ax.set_axis_off()
            target = lut.render(location, shown)
            alpha = 0.7 * np.sqrt(target)[..., None]
            ax.imshow((1 - alpha) * grey + alpha * colormaps["jet"](target)[..., :3], extent=extent)
            for g in lut[location]:
                ax.plot(g.mu_x, g.mu_y, "w+", markersize=6, markeredgewidth=1.2)
                ax.add_patch(Ellipse((g.mu_x, g.mu_y), 4 * g.sigma_x, 4 * g.sigma_y, fill=False,
                                     edgecolor="white", linewidth=0.8, linestyle="--"))
            ax.set_title(location, fontsize=10)
    source = lut.metadata.get("source", "unknown source")
    approx = " (APPROXIMATION)" if lut.metadata.get("approximation") else ""
    fig.suptitle(f"cxrg anatomical atlas: {source}{approx}\n"
                 "radiological convention: the patient's left is on the image's right", fontsize=11)
    out = Path(out_png)
    save_figure(fig, out)
    return out
