"""Held-out phantom sets in the formats cxrg reads: MS-CXR CSV + PNGs, a tuning manifest, negatives.

Sets (each from its own seed, none shares a phantom with the training draw):

- ``test``: the benchmark. One-sided findings on both sides (every zone, every pathology, left and right
  alternating), two-finding prompts ("left apical and right lower pneumonia") and bilateral ones; each
  finding placed **off the atlas**: its centre 0.6-1.0 (jitter unit: max(sigma, 16 px at 512)) from the
  atlas centre in a random direction, so the image-blind prior is not handed the answer.
- ``val``: the same recipe from another seed: the only set settings (layers, windows, lr) are chosen on.
- ``tune``: a curated-manifest (`cxrg tune`) of phantoms with their prompts, drawn like the training data.
- ``classify``: pneumothorax positives (MS-CXR CSV) and healthy negatives (CSV of `cxrg classify`).
- ``classify-faint``: the same with fainter positives (contrast scaled by FAINT, uniform per image), so that
  the plain diffusion classifier is no longer perfect and heatmap weighting has something to win (Fig. 6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxrg.anatomy.lut import Lut
from cxrg.organism.phantoms import (
    BILATERAL,
    FINDINGS,
    ONE_SIDED,
    Phantom,
    make_phantom,
    random_phantom,
    two_locations,
)
from cxrg.runs import atomic_write_csv

MS_CXR_FIELDS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                 "image_height")
OFF_ATLAS = (0.6, 1.0)
SEEDS = {"test": 1001, "val": 2002, "tune": 3003, "classify": 4004, "classify-faint": 5005}
FAINT = (0.3, 0.8)
"""Contrast range of the faint pneumothorax positives (1 = the drawing of the training data); fixed on a
calibration set of another seed (9009, 30 + 30, the plain classifier at 30 draws: AUROC 0.661 for 0.1-0.4,
0.770 for 0.2-0.6, 0.850 for 0.3-0.8, the range kept: below the issue's 0.95 with room), not on the faint
set itself."""


def save_png(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 65535).round().astype(np.uint16)).save(path)


def bench_phantoms(lut: Lut, count: int, size: int, seed: int) -> list[Phantom]:
    """`count` phantoms: 60 % one-sided (sides alternate), 25 % two findings, 15 % bilateral; off-atlas."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        pathology = FINDINGS[k % len(FINDINGS)]
        kind = k % 20
        if kind < 12:
            zoned = ONE_SIDED[:len(ONE_SIDED) // 2]  # left ...
            location = zoned[(k // 2) % len(zoned)]
            if k % 2:
                location = location.replace("left", "right", 1)
            locations: tuple[str, ...] = (location,)
        elif kind < 17:
            locations = two_locations(lut, rng)
        else:
            locations = (BILATERAL[k % len(BILATERAL)],)
        out.append(make_phantom(lut, size, rng, pathology, locations, off_atlas=OFF_ATLAS))
    return out


def write_ms_cxr(folder: Path, phantoms: list[Phantom], prefix: str) -> Path:
    """images/<id>.png and annotations.csv (MS-CXR columns, one row per box)."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, p in enumerate(phantoms):
        name = f"{prefix}{k:04d}"
        save_png(p.image, folder / "images" / f"{name}.png")
        for x, y, w, h in p.boxes():
            rows.append({"dicom_id": name, "category_name": p.pathology, "label_text": p.prompt,
                         "path": f"{name}.png", "x": x, "y": y, "w": w, "h": h,
                         "image_width": p.image.shape[1], "image_height": p.image.shape[0]})
    atomic_write_csv(folder / "annotations.csv", MS_CXR_FIELDS, rows)
    return folder / "annotations.csv"


def write_tune_manifest(folder: Path, lut: Lut, count: int, size: int, seed: int) -> Path:
    """images/*.png + manifest.csv (sample_id, image_id, image_path, pathology, locations, prompt)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    rows: list[Any] = []
    while len(rows) < count:
        p = random_phantom(lut, size, rng)
        if not p.locations:  # tuning needs a location
            continue
        name = f"tune{len(rows):04d}"
        save_png(p.image, folder / "images" / f"{name}.png")
        rows.append({"sample_id": name, "image_id": name, "image_path": f"{name}.png",
                     "pathology": p.pathology, "locations": "|".join(p.locations), "prompt": p.prompt})
    atomic_write_csv(folder / "manifest.csv", list(rows[0]), rows)
    return folder / "manifest.csv"


def write_classify_set(folder: Path, lut: Lut, count: int, size: int, seed: int,
                       strength: tuple[float, float] | None = None) -> tuple[Path, Path]:
    """`count` pneumothorax positives (MS-CXR CSV, one-sided, off-atlas) and `count` healthy negatives;
    `strength` (low, high): each positive's contrast drawn uniformly from it (its own stream, so the
    phantoms' other draws are those of the full-contrast set of the same seed)."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    contrast = (np.random.default_rng([seed, 1]).uniform(*strength, count) if strength is not None
                else np.ones(count))
    positives = []
    zoned = [loc for loc in ONE_SIDED if loc.split()[-1] in ("apical", "upper", "middle", "lower")]
    for k in range(count):
        positives.append(make_phantom(lut, size, rng, "Pneumothorax", (zoned[k % len(zoned)],),
                                      off_atlas=OFF_ATLAS, strength=float(contrast[k])))
    annotations = write_ms_cxr(folder, positives, "ptx")
    rows = []
    for k in range(count):
        name = f"healthy{k:04d}.png"
        save_png(make_phantom(lut, size, rng, None).image, folder / "images" / name)
        rows.append({"image": name, "image_id": f"healthy{k:04d}"})
    atomic_write_csv(folder / "negatives.csv", ["image", "image_id"], rows)
    return annotations, folder / "negatives.csv"


def write_sets(folder: Path, size: int = 128, test: int = 100, val: int = 60, tune: int = 80,
               classify: int = 30, faint: int = 60, lut: Lut | None = None) -> dict[str, Path]:
    """Every held-out set under `folder` (test/, val/, tune/, classify/, classify-faint/); returns their
    main files."""
    lut = lut or Lut.default()
    folder = Path(folder)
    out = {"test": write_ms_cxr(folder / "test", bench_phantoms(lut, test, size, SEEDS["test"]), "test"),
           "val": write_ms_cxr(folder / "val", bench_phantoms(lut, val, size, SEEDS["val"]), "val"),
           "tune": write_tune_manifest(folder / "tune", lut, tune, size, SEEDS["tune"])}
    out["classify"], out["negatives"] = write_classify_set(folder / "classify", lut, classify, size,
                                                           SEEDS["classify"])
    if faint:
        out["classify-faint"], out["negatives-faint"] = write_classify_set(
            folder / "classify-faint", lut, faint, size, SEEDS["classify-faint"], FAINT)
    return out
