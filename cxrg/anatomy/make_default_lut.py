"""Generate the shipped default LUT (``cxrg/anatomy/default_lut.json``) from anatomical proportions.

    python -m cxrg.anatomy.make_default_lut [--out PATH]

The default LUT is an APPROXIMATION for users without Chest ImaGenome access. No credentialed data went into
it: each Chest ImaGenome region the LUT needs is given a box as a fraction of the 512 x 512 model frame (a
frontal PA film after "shortest side to 512, centre crop"), and the box becomes a Gaussian exactly as a gold
box does (eq. 6). The proportions come from textbook chest-radiograph anatomy:

* thorax about 78 % of the frame width (x 0.11-0.89), centred; each lung box reaches near the midline;
* lung apices about 12 % from the top of the frame; costophrenic angles at about 76-80 % of its height,
  the right hemidiaphragm about 2 % of the frame (1-2 cm) higher than the left;
* upper / mid / lower lung zones as three equal bands of the lung height (the classic zones are bounded by
  the anterior ends of the 2nd and 4th ribs); the apical zone is the part above the clavicles (top ~10 %
  of the frame below the apex); the costophrenic angle a box of ~12 % x 12 % at the lung's lower outer
  corner;
* cardiac silhouette about 34 % of the frame wide (cardiothoracic ratio ~0.44, normal < 0.5), one third
  right and two thirds left of the midline, from about the hilum (y 0.42) down to the diaphragm.

Laterality: the patient's left is on the image's right, so "left" regions lie at x > 0.5. The boxes were
checked by eye over public NIH ChestX-ray14 images. Build the real LUT with
``cxrg lut build --imagenome gold_bbox_coordinate_annotations_1000images.csv --out lut.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrg.anatomy.gaussians import Gaussian2D, box_gaussian
from cxrg.anatomy.lut import DEFAULT_LUT_FILE, Lut, lut_from_regions

SIZE = 512

# Region -> (x1, y1, x2, y2) as fractions of the model frame; image left = patient right. The left regions
# mirror the right ones, with the lower ones 2 % further down (lower left hemidiaphragm).
REGION_BOXES: dict[str, tuple[float, float, float, float]] = {
    "right lung": (0.11, 0.12, 0.48, 0.76),
    "right apical zone": (0.17, 0.12, 0.45, 0.22),
    "right upper lung zone": (0.15, 0.12, 0.47, 0.33),
    "right mid lung zone": (0.12, 0.33, 0.48, 0.55),
    "right lower lung zone": (0.11, 0.55, 0.48, 0.76),
    "right costophrenic angle": (0.10, 0.66, 0.22, 0.78),
    "left lung": (0.52, 0.12, 0.89, 0.78),
    "left apical zone": (0.55, 0.12, 0.83, 0.22),
    "left upper lung zone": (0.53, 0.12, 0.85, 0.34),
    "left mid lung zone": (0.52, 0.34, 0.88, 0.56),
    "left lower lung zone": (0.52, 0.56, 0.89, 0.78),
    "left costophrenic angle": (0.78, 0.68, 0.90, 0.80),
    "cardiac silhouette": (0.38, 0.42, 0.72, 0.74),
}

NOTE = (
    "APPROXIMATION: built from textbook proportions of a frontal PA chest radiograph, not from Chest "
    "ImaGenome (no credentialed data). Region boxes (fractions of the 512 x 512 model frame): thorax x "
    "0.11-0.89; apices at y 0.12; costophrenic angles at y 0.76 (right) / 0.78 (left, lower hemidiaphragm); "
    "upper/mid/lower lung zones = equal thirds of lung height (classic zones: anterior ends of ribs 2, 4); "
    "apical zone = top 10 % above the clavicles; cardiac silhouette x 0.38-0.72, y 0.42-0.74 (cardiothoracic "
    "ratio ~0.44, normal < 0.5; one third right, two thirds left of the midline). mu = box centre, sigma = "
    "extent / 6 (eq. 6). Checked by eye over public NIH ChestX-ray14 images. For the real LUT run: cxrg lut "
    "build --imagenome gold_bbox_coordinate_annotations_1000images.csv --out lut.json"
)


def make_default_lut() -> Lut:
    regions = {}
    for name, (x1, y1, x2, y2) in REGION_BOXES.items():
        g = box_gaussian((x1 * SIZE, y1 * SIZE, x2 * SIZE, y2 * SIZE))
        regions[name] = Gaussian2D(*(round(v, 3) for v in (g.mu_x, g.mu_y, g.sigma_x, g.sigma_y)))
    metadata = {
        "source": "cxrg default: textbook anatomical proportions of a frontal PA chest radiograph",
        "approximation": True,
        "note": NOTE,
        "built_by": "python -m cxrg.anatomy.make_default_lut",
        "region_boxes_fraction_xyxy": {name: list(box) for name, box in REGION_BOXES.items()},
        "references": [
            "Lung zones bounded by the anterior ends of the 2nd and 4th ribs (standard radiology teaching)",
            "Danzer CS (1919), the cardiothoracic ratio; normal PA ratio below 0.5",
            "Felson B, Principles of Chest Roentgenology: right hemidiaphragm usually 1-2 cm above the left; "
            "about one third of the heart lies right of the midline",
        ],
    }
    return lut_from_regions(regions, metadata, size=SIZE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(DEFAULT_LUT_FILE))
    args = parser.parse_args(argv)
    make_default_lut().save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
