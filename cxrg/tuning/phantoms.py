"""Synthetic chest-like phantoms with a finding at an atlas location, for tests and learnability runs.

A phantom is two dark lung fields in a brighter body with a bright blob (an "opacity") drawn at the atlas
Gaussian of a location, at the model's input frame. They let the tuner be exercised end to end, and let
a learnability experiment ask whether tuning moves attention towards the named location.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxrg.anatomy.lut import Lut
from cxrg.runs import atomic_write_csv
from cxrg.vocab import format_prompt

LOCATIONS = ("left lower", "right lower", "left apical", "right apical", "left upper", "right upper",
             "left middle", "right middle")


def phantom(location: str, lut: Lut, size: int, seed: int) -> np.ndarray:
    """size x size float32 image in [0, 1] with a blob at `location`'s Gaussian."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    lungs = np.exp(-(((xx - 0.3) / 0.14) ** 2 + ((yy - 0.48) / 0.28) ** 2) ** 2)
    lungs += np.exp(-(((xx - 0.7) / 0.14) ** 2 + ((yy - 0.48) / 0.28) ** 2) ** 2)
    image = 0.75 - 0.5 * lungs
    blob = lut.render([location], shape=size, jitter=rng, jitter_fraction=0.03)
    image = image + 0.45 * blob + 0.03 * rng.standard_normal((size, size))
    return np.clip(image, 0, 1).astype(np.float32)


def write_phantom_set(folder: Path, count: int, lut: Lut, size: int = 64, seed: int = 0,
                      pathology: str = "Lung Opacity") -> Path:
    """`count` phantoms (PNG) cycling through LOCATIONS, and a manifest.csv in `cxrg curate`'s columns."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(count):
        location = LOCATIONS[k % len(LOCATIONS)]
        image = phantom(location, lut, size, seed * 100_003 + k)
        name = f"phantom_{k:04d}.png"
        Image.fromarray((image * 65535).round().astype(np.uint16)).save(folder / "images" / name)
        prompt = format_prompt((location,), pathology)
        rows.append({"sample_id": f"phantom{k}", "image_id": f"phantom{k}", "image_path": name,
                     "pathology": pathology, "locations": location, "prompt": prompt})
    atomic_write_csv(folder / "manifest.csv", list(rows[0]), rows)
    return folder / "manifest.csv"
