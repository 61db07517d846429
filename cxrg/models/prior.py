"""The prior: the atlas Gaussian(s) of the prompt's location(s), image-blind.

It shows what knowing only *where the phrase says* is worth: every real model must beat it. The LUT lives
in the LDM's 512 x 512 input frame (shortest side resized to 512, centre crop); the map is drawn there and
brought back to the image through the transform's exact inverse, so pixels outside the crop are NaN, as for
the LDM itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrg import __version__
from cxrg.anatomy.lut import Lut, active_lut
from cxrg.geometry import ResizeCenterCrop
from cxrg.registry import HeatmapQuery, ModelCard, WeightFile, option
from cxrg.vocab import prompt_locations


@dataclass(frozen=True)
class PriorOptions:
    lut: Path | None = option(None, "anatomical LUT JSON (default: lut.json in the weights folder, else the "
                              "shipped approximation)", "path")


class PriorModel:
    card = ModelCard(
        name="prior",
        prompts="vocabulary",
        version=__version__,
        licence="Apache-2.0",
        description="Image-blind floor: the atlas (LUT) Gaussian(s) of the prompt's location(s), placed "
                    "through the inverse of the 512 resize/centre-crop; NaN outside the crop.",
        weights=(WeightFile("lut.json", "optional anatomical LUT (the shipped approximation is used "
                            "otherwise; --lut, -o lut=FILE or `lut` in cxrg.toml take precedence)",
                            "cxrg lut build --imagenome gold_bbox_coordinate_annotations_1000images.csv "
                            "--out lut.json"),),
        notes="Prompts must be in the '{location} {pathology}' format (see cxrg.vocab.Prompt).",
    )

    Options: type = PriorOptions

    def __init__(self) -> None:
        self.lut: Lut | None = None

    def load(self, weights_dir: Path | None = None, device: str = "cpu", options: Any = None) -> None:
        self.lut = active_lut(weights_dir, getattr(options, "lut", None))

    def heatmap(self, query: HeatmapQuery) -> np.ndarray:
        if self.lut is None:
            self.load()
        assert self.lut is not None
        model_map = self.lut.render(prompt_locations(query.prompt), shape=self.lut.size)
        height, width = query.image.shape[:2]
        return ResizeCenterCrop(self.lut.size).heatmap_to_image(model_map, height, width)
