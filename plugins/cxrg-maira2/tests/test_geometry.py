"""Box mapping from MAIRA-2's centre square to the original image, and the rasterised union."""

from __future__ import annotations

import numpy as np
import pytest
from cxrg_maira2.geometry import box_to_image, boxes_heatmap, centre_square
from cxrg_maira2.parse import parse_grounded_output

from cxrg.bench.metrics import boxes_mask, miou, normalise


def adjust_as_maira2(box, width, height):
    """MAIRA-2's adjust_box_for_original_image_size, restated: fractions of the original image."""
    side = min(width, height)
    dx, dy = (width - side) // 2, (height - side) // 2
    x0, y0, x1, y1 = box
    return (int(x0 * side + dx) / width, int(y0 * side + dy) / height,
            int(x1 * side + dx) / width, int(y1 * side + dy) / height)


def test_portrait_like_rg1_uncr():
    # 1841 wide, 1955 high: the square is 1841, 57 rows cut at the top and 57 at the bottom
    assert centre_square(1955, 1841) == (0, 57, 1841)
    (phrase,) = parse_grounded_output("<obj>Left pleural effusion<box><x2><y34><x42><y57></box></obj>")
    box = box_to_image(phrase.boxes[0], 1955, 1841)
    assert box == (46, 692, 782, 1115)  # int(0.025*1841), int(0.345*1841 + 57), ...
    expected = adjust_as_maira2(phrase.boxes[0], 1841, 1955)
    assert box == pytest.approx((expected[0] * 1841, expected[1] * 1955, expected[2] * 1841,
                                 expected[3] * 1955))


def test_landscape_offsets_columns():
    assert centre_square(300, 401) == (50, 0, 300)
    assert box_to_image((0.0, 0.0, 1.0, 1.0), 300, 401) == (50, 0, 350, 300)
    assert box_to_image((0.505, 0.255, 0.995, 0.745), 300, 401) == (201, 76, 348, 223)


def test_heatmap_is_the_union_inside_the_square_and_nan_outside():
    boxes = [(60, 20, 120, 80), (100, 60, 160, 110), (340, 250, 360, 300)]  # the last one leaves the square
    heat = boxes_heatmap(boxes, 300, 401)
    assert heat.dtype == np.float32 and heat.shape == (300, 401)
    assert np.isnan(heat[:, :50]).all() and np.isnan(heat[:, 350:]).all()
    square = heat[:, 50:350]
    assert not np.isnan(square).any()
    ones = 60 * 60 + 60 * 50 - 20 * 20 + 10 * 50  # two overlapping boxes, plus the part of the third inside
    assert square.sum() == ones and set(np.unique(square)) == {0.0, 1.0}
    assert heat[20, 60] == 1 and heat[19, 60] == 0 and heat[80, 99] == 0 and heat[79, 99] == 1
    # what the harness scores: the boxes themselves, so mIoU against them is 1 at every threshold
    inside_square = [(60, 20, 120, 80), (100, 60, 160, 110), (340, 250, 350, 300)]
    assert miou(normalise(heat), boxes_mask(np.array(inside_square, float), (300, 401))) == 1.0
