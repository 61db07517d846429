"""A synthetic bench run folder of any size, for the report's tests and its timing benchmark.

It is what `cxrg bench` leaves behind, made without running models: an MS-CXR-format annotations CSV and
JPEG images (MIMIC-CXR-JPG layout), config.json (through RunDir), per_sample.csv with CNR and mIoU computed
by the harness's own scorer on the full-size maps, the maps kept by HeatmapStore, and summary.json,
results.md and results.png from the harness's summarise and write_reports. Maps are Gaussian blobs near or
away from the boxes over a smooth random background (smooth, as real maps are); every fourth model's maps
have a NaN band (outside a crop) and about 2 % of the pairs fail with a recorded error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion",
           "Pneumonia", "Pneumothorax")
LOCATIONS = ("left lower", "right lower", "bilateral", "left upper", "right upper", "bibasilar")
HEADER = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
          "image_height")


def _radiograph(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A grey picture with two dark lung fields, a spine and noise: enough to look at, nothing more."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.full((height, width), 0.75, np.float32)
    for cx in (0.3, 0.7):
        inside = ((xx / width - cx) / 0.17) ** 2 + ((yy / height - 0.5) / 0.33) ** 2 < 1
        image[inside] = 0.25
    image[:, int(0.47 * width):int(0.53 * width)] = 0.85
    image += 0.05 * rng.standard_normal((height, width)).astype(np.float32)
    return np.clip(image, 0, 1)


def synthetic_run(out: Path, samples: int = 40, models: tuple[str, ...] = ("oracle", "prior"),
                  size: tuple[int, int] = (160, 128), samples_per_image: int = 2, seed: int = 0,
                  resamples: int = 200) -> Path:
    """Write a bench run folder with `samples` samples x `models` under `out` (data in out/data, the run
    in out/run); returns the run folder."""
    from PIL import Image

    from cxrg.bench.harness import PER_SAMPLE_FIELDS, summarise
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.bench.metrics import normalise, score
    from cxrg.bench.reports import write_reports
    from cxrg.runs import RunDir, atomic_write_csv

    rng = np.random.default_rng(seed)
    out = Path(out)
    images = out / "data" / "mimic-cxr-jpg"
    annotations = out / "data" / "MS_CXR_Local_Alignment_v1.0.0.csv"
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    csv_rows, kept = [], []
    for k in range(samples):
        dicom_id = f"img{k // samples_per_image:05d}"
        relative = f"files/p10/p10{k // samples_per_image:06d}/s5{k // samples_per_image:07d}/{dicom_id}.jpg"
        if k % samples_per_image == 0:
            path = images / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            picture = (_radiograph(rng, height, width) * 255).astype(np.uint8)
            Image.fromarray(picture).save(path, quality=90)
        category = CLASSES[k % len(CLASSES)]
        phrase = f"{LOCATIONS[k % len(LOCATIONS)]} {category.lower()} ({k})"
        bw, bh = rng.uniform(0.15, 0.4) * width, rng.uniform(0.15, 0.4) * height
        x, y = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        boxes = [(x, y, bw, bh)]
        csv_rows.append([dicom_id, category, phrase, relative, f"{x:.1f}", f"{y:.1f}", f"{bw:.1f}",
                         f"{bh:.1f}", width, height])
        kept.append((f"{dicom_id}:{k % samples_per_image}", category, phrase, boxes))
    annotations.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(annotations, HEADER, [dict(zip(HEADER, row, strict=True)) for row in csv_rows])

    config = {"models": list(models), "dataset": "ms-cxr", "annotations": str(annotations.resolve()),
              "images": str(images.resolve()), "split": None, "limit": None, "resamples": resamples,
              "seed": 0, "save_heatmaps": True, "heatmap_size": 256}
    run = RunDir(out / "run", "bench", config)
    store = HeatmapStore(run.path)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for sample_id, category, phrase, boxes in kept:
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes])
        for j, model in enumerate(models):
            row = {"model": model, "sample_id": sample_id, "category": category, "prompt": phrase,
                   "phrase": phrase, "status": "scored", "cnr": "", "miou": "", "seconds": "0.0010",
                   "error": ""}
            if rng.random() < 0.02:
                row["status"], row["error"] = "failed", f"synthetic failure of {model} on {sample_id}"
            else:
                x, y, w, h = boxes[0]
                hit = rng.random() < 0.8 - 0.15 * j  # later models miss more often
                cx, cy = (x + w / 2, y + h / 2) if hit else (rng.uniform(0, width), rng.uniform(0, height))
                sigma = max(w, h) / 3
                heat = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma * sigma))
                coarse = Image.fromarray(rng.random((6, 6)).astype(np.float32), mode="F")
                heat += 0.3 * np.asarray(coarse.resize((width, height), Image.Resampling.BILINEAR))
                if j % 4 == 3:
                    heat[:, : width // 10] = np.nan  # outside the model's crop
                scored = normalise(heat)
                cnr, miou = score(scored, xyxy)
                store.save(model, sample_id, scored)
                row["cnr"], row["miou"] = repr(float(cnr)), repr(float(miou))
            rows[(model, sample_id)] = row
    atomic_write_csv(run.file("per_sample.csv"), PER_SAMPLE_FIELDS, rows.values())

    class _Sample:
        def __init__(self, sample_id: str, category: str) -> None:
            self.sample_id, self.category = sample_id, category

    as_samples: list[Any] = [_Sample(s, c) for s, c, _, _ in kept]  # summarise reads sample_id, category
    summary = summarise(list(models), as_samples, rows, resamples, 0, {})
    write_reports(summary, run.path)
    run.close()
    return run.path
