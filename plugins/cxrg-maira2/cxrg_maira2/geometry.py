"""MAIRA-2's boxes in the original image, and their union as a heatmap.

MAIRA-2's image processor sees the centred square of side min(width, height) (it resizes the shortest side
and centre-crops). Boxes come as fractions of that square; `box_to_image` maps them back as MAIRA-2's own
`adjust_box_for_original_image_size` does: offset (size - side) // 2 on each axis, then each coordinate
truncated to a whole pixel. The heatmap is 1 on pixels inside any box, 0 on the rest of the square, and
NaN outside the square, where the model saw nothing (cxrg's convention); a pixel is inside a box when its
centre is, the same rule the metrics use, so mIoU sees exactly these boxes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from cxrg.geometry import boxes_mask


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """(left, top, side) of the square MAIRA-2 sees, in original pixels."""
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side


Box = tuple[float, float, float, float]


def box_to_image(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """A box in fractions of the square -> x0, y0, x1, y1 in original pixels (pixel edges)."""
    left, top, side = centre_square(height, width)
    x0, y0, x1, y1 = box
    return (int(x0 * side + left), int(y0 * side + top), int(x1 * side + left), int(y1 * side + top))


def boxes_heatmap(boxes_xyxy: Iterable[tuple[int, int, int, int]], height: int, width: int) -> np.ndarray:
    """float32 H x W: 1 inside the union of the boxes, 0 elsewhere in the square, NaN outside it."""
    boxes = np.asarray(list(boxes_xyxy), dtype=np.float64).reshape(-1, 4)
    heat = boxes_mask(boxes, (height, width)).astype(np.float32)
    left, top, side = centre_square(height, width)
    seen = np.zeros((height, width), dtype=bool)
    seen[top:top + side, left:left + side] = True
    heat[~seen] = np.nan
    return heat
