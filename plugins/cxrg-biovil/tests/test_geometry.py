"""Heatmap geometry on a real non-square radiograph: RG1_UNCR.dcm (1841 wide, 1955 high, MONOCHROME1),
shipped by the pydicom-data package (module data_store).

hi-ml maps the patch grid back onto a centred square of side floor(crop * shortest / 512) original pixels
and pads the rest with NaN, floor on the left/top and ceil on the right/bottom. The network's input came
from a slightly different region: torchvision's Resize(512) truncates the long side (1955 -> 543.7 -> 543
rows), so each resized row covers a little more than 1955/543.7 original rows and the crop's true source
is 1728.2 (BioViL) / 1613.0 (BioViL-T) rows high, not 1725 / 1610. hi-ml's map, which the paper's BioViL
numbers were computed with, is therefore up to 4 original pixels short at the bottom (0.2 % of the height);
the test pins both facts.
"""

from __future__ import annotations

from pathlib import Path

import data_store
import numpy as np
import pytest

from cxrg.images import read_image
from cxrg.registry import Query

RG1 = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"

# (model fixture, crop, NaN columns left/right, NaN rows top/bottom), by hand with the docstring's rule
CASES = [("biovil", 480, (58, 58), (115, 115)), ("biovil_t", 448, (115, 116), (172, 173))]


@pytest.fixture(scope="module")
def radiograph() -> np.ndarray:
    image = read_image(RG1)
    assert image.shape == (1955, 1841)
    return image


def nan_margins(heat: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    seen = ~np.isnan(heat)
    rows, cols = np.flatnonzero(seen.any(axis=1)), np.flatnonzero(seen.any(axis=0))
    height, width = heat.shape
    return (int(cols[0]), width - 1 - int(cols[-1])), (int(rows[0]), height - 1 - int(rows[-1]))


def torchvision_crop_in_original(height: int, width: int, crop: int) -> tuple[float, float, float, float]:
    """Source region (x0, y0, x1, y1) of torchvision's Resize(512) + CenterCrop(crop), in original pixels."""
    if width <= height:
        resized_w, resized_h = 512, int(512 * height / width)
    else:
        resized_w, resized_h = int(512 * width / height), 512
    left, top = int(round((resized_w - crop) / 2.0)), int(round((resized_h - crop) / 2.0))
    sx, sy = resized_w / width, resized_h / height
    return left / sx, top / sy, (left + crop) / sx, (top + crop) / sy


@pytest.mark.parametrize(("fixture", "crop", "cols", "rows"), CASES)
def test_nan_margins_where_the_crop_cut(fixture, crop, cols, rows, radiograph, request):
    heat = request.getfixturevalue(fixture).heatmap(
        Query(image=radiograph, prompt="right pleural effusion", image_path=RG1))
    assert heat.shape == (1955, 1841) and heat.dtype == np.float32
    assert nan_margins(heat) == (cols, rows)
    side = crop * 1841 // 512
    inside = heat[rows[0]:1955 - rows[1], cols[0]:1841 - cols[1]]
    assert inside.shape == (side, side) and np.isfinite(inside).all()
    assert np.isnan(heat).sum() == 1955 * 1841 - side * side
    x0, y0, x1, y1 = torchvision_crop_in_original(1955, 1841, crop)
    assert abs(cols[0] - x0) <= 1 and abs((1841 - cols[1]) - x1) <= 1
    assert abs(rows[0] - y0) <= 1 and 3 < y1 - (1955 - rows[1]) < 4  # hi-ml's approximation, see above
