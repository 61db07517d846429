"""Shared fixtures: small datasets in the real formats, written by the tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if os.environ.get("CXRG_SHARED_DATA"):
    SHARED_DATA = Path(os.environ["CXRG_SHARED_DATA"])

MS_CXR_HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                 "image_width", "image_height"]


def write_png(path: Path, shape: tuple[int, int], seed: int = 0, bits: int = 8) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        Image.fromarray(rng.integers(0, 65535, size=shape, dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8)).save(path)


# (dicom_id, category, phrase, boxes xywh, (height, width))
MS_CXR_SAMPLES = [
    ("d1", "Pneumonia", "right lower lobe opacity", [(20, 60, 30, 25)], (120, 100)),
    ("d1", "Pleural Effusion", "small left effusion", [(60, 80, 30, 30)], (120, 100)),
    ("d2", "Pneumonia", "bilateral opacities", [(10, 40, 25, 40), (60, 45, 25, 40)], (90, 110)),
    ("d3", "Pneumonia", "patchy opacity", [(30, 30, 40, 20)], (100, 100)),
    ("d4", "Pleural Effusion", "left pleural effusion", [(70, 70, 40, 35)], (130, 120)),
    ("d5", "Pneumothorax", "apical pneumothorax", [(5, 5, 40, 30)], (100, 130)),
    ("d6", "Pneumothorax", "right pneumothorax", [(0, 0, 50, 95)], (100, 90)),
    ("d7", "Pleural Effusion", "box partly outside", [(80, 90, 60, 40)], (110, 100)),
]


def mimic_path(dicom_id: str) -> str:
    return f"files/p10/p10000032/s50414267/{dicom_id}.jpg"


@pytest.fixture
def ms_cxr(tmp_path: Path) -> tuple[Path, Path]:
    """An MS-CXR-format CSV and its images (MIMIC-CXR-JPG layout, JPEG files)."""
    images = tmp_path / "mimic-cxr-jpg"
    rows = []
    seen = set()
    for k, (dicom_id, category, phrase, boxes, (h, w)) in enumerate(MS_CXR_SAMPLES):
        if dicom_id not in seen:
            path = images / mimic_path(dicom_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(k)
            Image.fromarray(rng.integers(0, 255, size=(h, w), dtype=np.uint8)).save(path, quality=95)
            seen.add(dicom_id)
        for x, y, bw, bh in boxes:
            rows.append([dicom_id, category, phrase, mimic_path(dicom_id), x, y, bw, bh, w, h])
    annotations = tmp_path / "MS_CXR_Local_Alignment_v1.0.0.csv"
    with annotations.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MS_CXR_HEADER)
        writer.writerows(rows)
    return annotations, images
