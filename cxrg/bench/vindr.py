"""VinDr-CXR test set with synthetic "{location} {pathology}" prompts (the paper's out-of-distribution set).

Files (PhysioNet vindr-cxr 1.0.0): `annotations/annotations_test.csv` (image_id, rad_id, class_name, x_min,
y_min, x_max, y_max; boxes in the DICOM's pixels) and, next to it, `image_labels_test.csv` (image-level
labels, one 0/1 column per label). Images: `{image_id}.dicom` under --images, or PNG/JPEG conversions
`{image_id}.png|.jpg` at the original resolution.

Classes (the paper's seven): the local labels Atelectasis, Cardiomegaly, Consolidation, Lung Opacity,
Pleural effusion, Pneumothorax map to themselves; VinDr has no Pneumonia box, so boxes labelled
Infiltration or ILD become Pneumonia on some images (`pneumonia_rule`):

- "any-finding" (default): on every image whose image-level labels (image_labels_test.csv) mark any of the
  eight pathologies (Lung Opacity, Cardiomegaly, Pleural effusion, Pneumothorax, Consolidation, Atelectasis,
  Edema, Pneumonia). This is what the Vilouras 2024 code (vios-s/ldm-phrase-grounding, data/vindr_cxr.py)
  does, whose VinDr protocol the paper's Table 2 uses; the paper itself does not spell the rule out.
- "pneumonia-label": only on images whose image-level Pneumonia label is 1 (cxrg 0.1's rule, narrower).

Every other class (Aortic enlargement, Nodule/Mass, No finding, ...) is outside the benchmark and counted
as such. VinDr's test set has no Edema boxes.

One sample = one (image, class): the boxes of all radiologists for that class together (the mask is their
union). Prompt: each box goes to the model frame (512 resize, centre crop), becomes a Gaussian (eq. 6)
and takes the nearest atlas location by squared 2-Wasserstein distance (eq. 7) among the one-sided lung
locations (left/right x whole lung, apical, upper, middle, lower, costophrenic; "pleural", "base" and
"lingular" share their Gaussians with "lower" and "left middle" and are not separate candidates); the
locations of the boxes are de-duplicated, left/right pairs merged into bilateral ones, and joined by "and",
through `cxrg.vocab.format_prompt` like every other producer of prompts (so an effusion box nearest a whole
lung is an effusion in that side's pleural space: "left pleural pleural effusion"). Cardiomegaly boxes give
the prompt "cardiomegaly" (location: the heart). Laterality is radiological: a box on the image's right
is the patient's left.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cxrg.anatomy.lut import Lut, locations_for_boxes, single_component_locations
from cxrg.bench.samples import Dataset, Sample, read_csv_rows
from cxrg.errors import CxrgError
from cxrg.geometry import ResizeCenterCrop
from cxrg.images import image_size, resolve_image
from cxrg.vocab import format_prompt, location_name

VINDR_COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
CLASS_MAP = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Lung Opacity": "Lung Opacity",
    "Pleural effusion": "Pleural Effusion",
    "Pneumothorax": "Pneumothorax",
}
PNEUMONIA_SOURCES = ("Infiltration", "ILD")
PNEUMONIA_RULES = ("any-finding", "pneumonia-label")
LABEL_COLUMNS = ("Lung Opacity", "Cardiomegaly", "Pleural effusion", "Pneumothorax", "Consolidation",
                 "Atelectasis", "Edema", "Pneumonia")
"""The image-level label columns of the eight pathologies, spelt as VinDr spells them."""
CLASS_ORDER = ("Pneumonia", "Pneumothorax", "Consolidation", "Atelectasis", "Cardiomegaly", "Lung Opacity",
               "Pleural Effusion")
CANDIDATES = tuple(location_name(side, zone) for side in ("left", "right")
                   for zone in ("", "apical", "upper", "middle", "lower", "costophrenic"))
IMAGE_SUFFIXES = (".dicom", ".dcm", ".png", ".jpg", ".jpeg")
CANDIDATE_SETS = ("lut", "lung")
"""Eq. 7's candidates: "lut" (the paper: argmin over every Gaussian of the LUT, i.e. every one-Gaussian
location incl. the cardiac silhouette, ties to the first in the LUT's order as argmin does: "lower" before
"pleural" and "base", "left middle" before "lingular") or "lung" (cxrg: CANDIDATES, the one-sided lung
locations only, so a box near the heart is never located at the heart)."""


def candidate_locations(lut: Lut, candidates: str = "lung") -> tuple[str, ...]:
    if candidates not in CANDIDATE_SETS:
        raise CxrgError(f"unknown eq. 7 candidates {candidates!r}",
                        hint=f"choose {' or '.join(CANDIDATE_SETS)}")
    return single_component_locations(lut) if candidates == "lut" else CANDIDATES


def prompt_for_boxes(pathology: str, boxes_xyxy: np.ndarray, height: int, width: int, lut: Lut,
                     candidates: str = "lung", style: str = "cxrg") -> str:
    """The synthetic prompt for one sample's boxes (original pixels) in an image of height x width, in the
    prompt `style` (cxrg.vocab.STYLES: the protocol's prompt_style)."""
    if pathology == "Cardiomegaly":
        return format_prompt((), pathology, style=style)
    model_boxes = ResizeCenterCrop(lut.size).boxes_to_model(np.asarray(boxes_xyxy, float), height, width)
    return format_prompt(locations_for_boxes(model_boxes, lut, candidate_locations(lut, candidates)),
                         pathology, style=style)


def pneumonia_images(labels_csv: Path, rule: str = "any-finding") -> set[str]:
    """Images whose Infiltration/ILD boxes count as Pneumonia under `rule` (see the module docstring)."""
    if rule not in PNEUMONIA_RULES:
        raise CxrgError(f"unknown VinDr Pneumonia rule {rule!r}",
                        hint=f"choose {' or '.join(PNEUMONIA_RULES)}")
    columns = LABEL_COLUMNS if rule == "any-finding" else ("Pneumonia",)
    with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
        return {row["image_id"] for row in csv.DictReader(handle)
                if any(_is_positive(row.get(column, "")) for column in columns)}


def _is_positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def find_image(root: Path, image_id: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = resolve_image(root, image_id + suffix)
        if candidate.is_file():
            return candidate
    raise ValueError(f"no image {image_id}{{{','.join(IMAGE_SUFFIXES)}}} under {root}")


def read_vindr(annotations: Path, images: Path, lut: Lut, pneumonia_rule: str = "any-finding",
               candidates: str = "lung", style: str = "cxrg") -> tuple[Dataset, list[str]]:
    """Samples in the paper's class set, and notes that account for every row of the file; `candidates`:
    eq. 7's candidate set (CANDIDATE_SETS)."""
    candidate_locations(lut, candidates)  # a bad name fails before any row is read
    rows = read_csv_rows(annotations, VINDR_COLUMNS)
    labels_csv = Path(annotations).with_name("image_labels_test.csv")
    notes = []
    if labels_csv.is_file():
        pneumonia = pneumonia_images(labels_csv, pneumonia_rule)
        notes.append(f"Pneumonia: Infiltration/ILD boxes on {len(pneumonia)} image(s) "
                     f"({pneumonia_rule} rule)")
    else:
        pneumonia = set()
        notes.append(f"{labels_csv.name} not found next to the annotations: no Pneumonia samples")

    groups: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
    outside = 0
    for line, row in enumerate(rows, start=2):
        name = row["class_name"]
        if name in CLASS_MAP:
            pathology = CLASS_MAP[name]
        elif name in PNEUMONIA_SOURCES and row["image_id"] in pneumonia:
            pathology = "Pneumonia"
        else:
            outside += 1
            continue
        groups.setdefault((row["image_id"], pathology), []).append((line, row))
    used = sum(len(members) for members in groups.values())
    notes.insert(0, f"{len(rows)} annotation rows: {used} in {len(groups)} samples of the benchmark "
                    f"classes, {outside} of other classes (incl. No finding)")

    order = {name: k for k, name in enumerate(CLASS_ORDER)}
    samples = []
    for image_id, pathology in sorted(groups, key=lambda key: (key[0], order[key[1]])):
        members = groups[(image_id, pathology)]
        samples.append(_sample(image_id, pathology, members, images, lut, candidates, style))
    counter: dict[str, int] = {}
    for sample in samples:  # ids <image_id>:<k>, k counting the image's classes in the paper's order
        image_id = sample.sample_id
        sample.sample_id = f"{image_id}:{counter.get(image_id, 0)}"
        counter[image_id] = counter.get(image_id, 0) + 1
    return Dataset("vindr-cxr", Path(annotations), samples), notes


def _sample(image_id: str, pathology: str, members: list[tuple[int, dict[str, str]]], images: Path,
            lut: Lut, candidates: str = "lung", style: str = "cxrg") -> Sample:
    lines = tuple(line for line, _ in members)
    sample = Sample(sample_id=image_id, image_path=None, category=pathology, prompt="", rows=lines)
    try:
        corners = ("x_min", "y_min", "x_max", "y_max")
        boxes = np.array([[float(row[k]) for k in corners] for _, row in members])
        empty = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if not np.isfinite(boxes).all() or empty.any():
            raise ValueError("a box has missing or non-positive extent")
        sample.boxes = boxes
        sample.image_path = find_image(images, image_id)
        height, width = image_size(sample.image_path)
        sample.image_size = (height, width)
        sample.prompt = prompt_for_boxes(pathology, boxes, height, width, lut, candidates, style)
    except ValueError as exc:
        sample.error = f"rows {', '.join(map(str, lines))}: {exc}"
    except CxrgError as exc:
        sample.error = f"rows {', '.join(map(str, lines))}: {exc.one_line()}"
    return sample
