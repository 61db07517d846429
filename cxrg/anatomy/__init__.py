"""Anatomical atlas: the location look-up table (LUT) of 2-D Gaussians, rendering, jitter and W2 matching.

Everything is in model space: pixels of the 512 x 512 model input (shortest side to 512, centre crop), at
pixel edges. The patient's left is on the image's right. See ``cxrg.anatomy.lut`` for how locations become
targets. Importing this package loads numpy and Pillow, never torch or matplotlib.
"""

from cxrg.anatomy.atlas_figure import draw_atlas
from cxrg.anatomy.gaussians import Gaussian2D, box_gaussian, jitter, render_gaussians, w2_squared
from cxrg.anatomy.imagenome import build_lut_from_imagenome
from cxrg.anatomy.lut import (
    REGIONS,
    Lut,
    location_regions,
    locations_for_boxes,
    lut_from_regions,
    nearest_location,
    single_component_locations,
)

__all__ = [
    "REGIONS",
    "Gaussian2D",
    "Lut",
    "box_gaussian",
    "build_lut_from_imagenome",
    "draw_atlas",
    "jitter",
    "location_regions",
    "locations_for_boxes",
    "lut_from_regions",
    "nearest_location",
    "render_gaussians",
    "single_component_locations",
    "w2_squared",
]
