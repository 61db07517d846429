"""The plugin seen from the cxrg command line in this environment: listing, checking, a real bench run."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cxrg_biovil.variants import BIOVIL
from PIL import Image

from cxrg.images import read_image
from cxrg.registry import Query
from cxrg.testing import synthetic_image

# (dicom_id, category, phrase, boxes x, y, w, h, (height, width)) in the MS-CXR CSV layout
SAMPLES = [
    ("a1", "Pneumonia", "right lower lobe opacity", [(40, 150, 80, 70)], (300, 260)),
    ("a1", "Pleural Effusion", "small left pleural effusion", [(160, 200, 80, 70)], (300, 260)),
    ("a2", "Pneumothorax", "right apical pneumothorax", [(30, 20, 90, 60)], (240, 320)),
    ("a3", "Pneumonia", "bilateral patchy opacities", [(20, 80, 70, 90), (150, 80, 70, 90)], (256, 256)),
    ("a4", "Pleural Effusion", "left pleural effusion", [(170, 190, 90, 80)], (290, 280)),
]
HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
          "image_height"]


def cxrg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cxrg", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def write_ms_cxr(root: Path) -> tuple[Path, Path]:
    images = root / "mimic-cxr-jpg"
    rows = []
    for k, (dicom_id, category, phrase, boxes, (h, w)) in enumerate(SAMPLES):
        relative = f"files/p10/p10000032/s50414267/{dicom_id}.jpg"
        path = images / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((synthetic_image((h, w), seed=k) * 255).astype(np.uint8)).save(path, quality=95)
        rows += [[dicom_id, category, phrase, relative, x, y, bw, bh, w, h] for x, y, bw, bh in boxes]
    annotations = root / "MS_CXR_Local_Alignment_v1.0.0.csv"
    with annotations.open("w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *rows])
    return annotations, images


def reference_scores(heat: np.ndarray, boxes_xywh: list[tuple[int, int, int, int]]) -> tuple[float, float]:
    """CNR and mIoU from first principles: NaN-aware min-max, box union, population variances."""
    heat = (heat - np.nanmin(heat)) / (np.nanmax(heat) - np.nanmin(heat))
    mask = np.zeros(heat.shape, bool)
    for x, y, w, h in boxes_xywh:
        mask[y:y + h, x:x + w] = True
    valid = ~np.isnan(heat)
    inside, outside = heat[mask & valid], heat[~mask & valid]
    cnr = (inside.mean() - outside.mean()) / math.sqrt(inside.var() + outside.var())
    ious = [((heat > t) & mask).sum() / ((heat > t) | mask).sum() for t in (0.1, 0.2, 0.3, 0.4, 0.5)]
    return float(cnr), float(np.mean(ious))


def test_models_list_info_and_check(weights, tmp_path):
    listed = cxrg("models", "list")
    assert listed.returncode == 0, listed.stderr
    lines = dict(line.split(": ", 1) for line in listed.stdout.strip().splitlines())
    assert lines["biovil"] == lines["biovil-t"] == "cxrg-biovil 0.1.0"
    assert lines["oracle"].startswith("cxrg ")
    info = cxrg("models", "info", "biovil-t")
    assert info.returncode == 0 and "crop 448, 14x14 patches" in info.stdout
    assert "microsoft/BiomedVLP-BioViL-T/biovil_t_image_model_proj_size_128.pt" in info.stdout
    checked = cxrg("models", "check", "biovil", "biovil-t", "--weights", str(weights))
    assert checked.stdout.split("\n")[:2] == ["biovil: ok", "biovil-t: ok"]
    missing = cxrg("models", "check", "biovil", "--weights", str(tmp_path))
    assert missing.returncode == 1 and "Traceback" not in missing.stdout + missing.stderr
    assert missing.stdout.startswith(
        "biovil: error: biovil: image checkpoint biovil_image_resnet50_proj_size_128.pt not found "
        f"(looked for {tmp_path}/microsoft/BiomedVLP-CXR-BERT-specialized/{BIOVIL.checkpoint} and ")


def test_broken_plugin_is_listed_with_its_error():
    """hi-ml-multimodal made unimportable: the listing names the cause, the other models still list."""
    code = ("import sys; sys.modules['health_multimodal'] = None; "
            "from cxrg.cli.main import run; run(['models', 'list'])")
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    lines = dict(line.split(": ", 1) for line in listed.stdout.strip().splitlines())
    assert lines["biovil"] == (
        "error: model 'biovil' failed to import: ImportError: hi-ml-multimodal==0.2.2 is not installed; "
        "cxrg-biovil needs its own environment (see plugins/cxrg-biovil/README.md) "
        "(cxrg_biovil.model:BioViL from cxrg-biovil 0.1.0); reinstall the plugin or check its dependencies")
    assert lines["biovil-t"].startswith("error: ") and lines["oracle"].startswith("cxrg ")


def test_bench_biovil_biovil_t_and_oracle(weights, tmp_path, biovil):
    annotations, images = write_ms_cxr(tmp_path)
    out = tmp_path / "run"
    result = cxrg("bench", "--models", "biovil,biovil-t,oracle", "--dataset", "ms-cxr", "--annotations",
                  str(annotations), "--images", str(images), "--weights", str(weights), "--out", str(out),
                  "--resamples", "500")
    assert result.returncode == 0, result.stderr
    print(result.stdout, result.stderr)  # shown with pytest -s: the run as a user sees it
    with (out / "per_sample.csv").open(newline="") as handle:
        rows = {(r["model"], r["sample_id"]): r for r in csv.DictReader(handle)}
    assert len(rows) == 3 * len(SAMPLES) and not any(r["error"] for r in rows.values())
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert {name: (c["scored"], c["failed"]) for name, c in counts.items()} == {
        "biovil": (5, 0), "biovil-t": (5, 0), "oracle": (5, 0)}
    # the harness's numbers for biovil are the plugin's heatmap scored from first principles
    for sample_id, (dicom_id, _, phrase, boxes, _) in [("a1:1", SAMPLES[1]), ("a3:0", SAMPLES[3])]:
        path = images / f"files/p10/p10000032/s50414267/{dicom_id}.jpg"
        assert rows[("biovil", sample_id)]["prompt"] == phrase  # a free-text model gets the phrase as written
        heat = biovil.heatmap(Query(image=read_image(path), prompt=phrase, image_path=path))
        cnr, miou = reference_scores(heat, boxes)
        assert float(rows[("biovil", sample_id)]["cnr"]) == pytest.approx(cnr, rel=1e-4, abs=1e-6)
        assert float(rows[("biovil", sample_id)]["miou"]) == pytest.approx(miou, rel=1e-4, abs=1e-6)
    table = (out / "results.md").read_text()
    for column in ("CNR biovil", "mIoU biovil", "CNR biovil-t", "mIoU biovil-t", "CNR oracle"):
        assert f"| {column} |" in table or f" {column} |" in table
