"""A picture of a SEG over its film, drawn from the SEG file itself (highdicom + matplotlib): a check that
the object holds what cxrg meant, where no DICOM viewer is at hand (docs/viewer.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def render_seg(seg_path: str | Path, source_path: str | Path, out: str | Path, max_side: int = 700) -> Path:
    """PNG with two panels: the fractional segment (jet, opacity growing with the value) and the region
    segment's outline, each over the display-windowed source; titles are the SEG's own segment labels."""
    import highdicom as hd
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pydicom
    from scipy import ndimage

    from cxrg.grounding import display_window
    from cxrg.images import read_image
    from cxrg.runs import save_figure

    seg = hd.seg.segread(seg_path)
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[source.SOPInstanceUID],
                                               segment_numbers=[1, 2], rescale_fractional=True)[0]
    labels = [seg.get_segment_description(n).segment_label for n in (1, 2)]
    film = read_image(source_path)
    step = max(1, int(np.ceil(max(film.shape) / max_side)))
    shown = display_window(film[::step, ::step])
    fraction, region = pixels[::step, ::step, 0], pixels[::step, ::step, 1] > 0
    height, width = shown.shape
    fig, axes = plt.subplots(1, 2, figsize=(2 * width / 100, height / 100 + 0.5), dpi=100)
    colours = plt.get_cmap("jet")(fraction)
    colours[..., 3] = 0.6 * fraction
    outline = region & ~ndimage.binary_erosion(region, iterations=2)
    for ax, title in zip(axes, labels, strict=True):
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    axes[0].imshow(colours)
    lines = np.zeros((*region.shape, 4))
    lines[outline] = (1.0, 0.85, 0.0, 1.0)
    axes[1].imshow(lines, interpolation="nearest")
    fig.tight_layout()
    out = Path(out)
    save_figure(fig, out, dpi=100)
    return out
