"""Build the LUT from the Chest ImaGenome gold-standard boxes.

Input: ``gold_dataset/gold_bbox_coordinate_annotations_1000images.csv`` (Chest ImaGenome 1.0.0, PhysioNet,
credentialed), one row per (image, region) with the columns image_id, x1, y1, x2, y2, width, height,
bbox_name, annot_id, original_x1, original_x2, original_y1, original_y2, original_width, original_height,
annotator, coord224, coord_original (x1..height are the 224 x 224 version, which we do not use).

Per row whose bbox_name is a region the LUT needs (``REGIONS``): the box in original pixels is rescaled the
way the LDM sees the image (shortest side to 512, centre crop; boxes are not clipped to the crop, so a
region's Gaussian keeps its anatomical extent), turned into a Gaussian by eq. 6 (mu = centre, sigma =
extent / 6) and then mu and sigma are averaged per region. Rows of other regions (trachea, spine, ...) are
counted and ignored; rows with unusable numbers are counted by reason and skipped, never silently.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from cxrg import __version__
from cxrg.anatomy.gaussians import Gaussian2D, box_gaussian
from cxrg.anatomy.lut import REGIONS, Lut, lut_from_regions
from cxrg.errors import InputError
from cxrg.geometry import ResizeCenterCrop

GOLD_FILE_NAME = "gold_bbox_coordinate_annotations_1000images.csv"
BOX_COLUMNS = ("original_x1", "original_y1", "original_x2", "original_y2")
SIZE_COLUMNS = ("original_width", "original_height")
REQUIRED_COLUMNS = ("image_id", "bbox_name", *BOX_COLUMNS, *SIZE_COLUMNS)
MAX_EXAMPLES = 5


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_lut_from_imagenome(csv_path: str | Path, size: int = 512) -> Lut:
    """The LUT from the Chest ImaGenome gold CSV; ``metadata["build"]`` counts rows used, ignored, skipped."""
    path = Path(csv_path)
    transform = ResizeCenterCrop(size)
    boxes: dict[str, list[Gaussian2D]] = defaultdict(list)
    images: set[str] = set()
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    other_regions: Counter[str] = Counter()
    rows = 0
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"Chest ImaGenome CSV lacks the columns {missing}", where=str(path),
                                 hint=f"pass gold_dataset/{GOLD_FILE_NAME} from Chest ImaGenome 1.0.0")
            for line, row in enumerate(reader, start=2):
                rows += 1
                region = (row["bbox_name"] or "").strip().lower()
                if region not in REGIONS:
                    other_regions[region] += 1
                    continue
                reason = None
                try:
                    x1, y1, x2, y2, w, h = (float(row[c]) for c in (*BOX_COLUMNS, *SIZE_COLUMNS))
                except (TypeError, ValueError):
                    reason = "non-numeric coordinate or image size"
                else:
                    if not all(math.isfinite(v) for v in (x1, y1, x2, y2, w, h)):
                        reason = "non-finite coordinate or image size"
                    elif w < 1 or h < 1:
                        reason = "image size below 1 px"
                    elif x2 <= x1 or y2 <= y1:
                        reason = "empty box (x2 <= x1 or y2 <= y1)"
                if reason is not None:
                    skipped[reason] += 1
                    if len(examples) < MAX_EXAMPLES:
                        examples.append(f"line {line}: {reason}")
                    continue
                model_box = transform.boxes_to_model(np.array([[x1, y1, x2, y2]]), h=round(h), w=round(w))[0]
                boxes[region].append(box_gaussian(model_box))
                images.add(row["image_id"])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the Chest ImaGenome CSV: {exc}", where=str(path)) from None

    regions = {
        name: Gaussian2D(*np.mean([[g.mu_x, g.mu_y, g.sigma_x, g.sigma_y] for g in gs], axis=0))
        for name, gs in boxes.items()
    }
    used = sum(len(gs) for gs in boxes.values())
    metadata = {
        "source": f"Chest ImaGenome 1.0.0 gold standard ({GOLD_FILE_NAME})",
        "approximation": False,
        "note": (f"Each gold box was rescaled as the model sees the image (shortest side to {size}, centre "
                 "crop), turned into mu = centre, sigma = extent / 6 (eq. 6), and mu and sigma were averaged "
                 "per region; bilateral locations and 'pulmonary' keep the right and left regions as two "
                 "components."),
        "built_by": f"cxrg {__version__} cxrg.anatomy.build_lut_from_imagenome",
        "input": {"file": path.name, "sha256": _sha256(path)},
        "build": {
            "rows": rows,
            "used": used,
            "images": len(images),
            "other_regions": sum(other_regions.values()),
            "skipped": dict(skipped),
            "skipped_examples": examples,
            "boxes_per_region": {name: len(boxes.get(name, [])) for name in REGIONS},
        },
    }
    try:
        return lut_from_regions(regions, metadata, size=size)
    except InputError as exc:
        raise InputError(exc.what, where=str(path), hint=exc.hint) from None
