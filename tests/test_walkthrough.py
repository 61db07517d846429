"""The README's "Reproducing the paper" section, followed start to finish on tiny weights and small files in
the real formats (slow: run with `pytest -m slow`)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from cxrg_test_support import run_line as cxrg
from PIL import Image
from test_anatomy import gold_rows, write_gold_csv
from test_atlas_models import vindr  # noqa: F401  (a fixture)
from test_curation_pipeline import mimic  # noqa: F401  (a fixture)


@pytest.mark.slow
def test_readme_walkthrough(tmp_path, mimic, ms_cxr, vindr, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CXRG_HOME", str(tmp_path / "home"))
    for name in ("CXRG_EMBEDDINGS", "CXRG_LUT", "CXRG_DTYPE", "CXRG_LDM_SETTINGS"):
        monkeypatch.delenv(name, raising=False)
    ms_annotations, jpg_root = ms_cxr
    vindr_annotations, vindr_images = vindr
    write_gold_csv(tmp_path / "gold.csv", gold_rows())
    (tmp_path / "cxrg.toml").write_text(f"""
weights = "weights"

[ms-cxr]
annotations = "{ms_annotations}"
images = "{jpg_root}"

[vindr-cxr]
annotations = "{vindr_annotations}"
images = "{vindr_images}"

[mimic-cxr]
reports = "{mimic['root']}"
chexpert = "{mimic['chexpert']}"
metadata = "{mimic['metadata']}"
images = "{jpg_root}"

[imagenome]
gold = "gold.csv"

[tune]
manifest = "runs/curate/manifest.csv"

[ldm]
inference_steps = 20
capture_steps = [6, 12]
""")
    # 1. weights (the tiny stand-in: `cxrg weights fetch` needs the network)
    assert cxrg("cxrg weights tiny weights") == 0
    assert cxrg("cxrg weights status") == 0
    assert cxrg("cxrg datasets") == 0
    assert "ms-cxr:" in capsys.readouterr().out
    # 2. atlas
    assert cxrg("cxrg lut build --imagenome gold.csv --out lut.json") == 0
    config = (tmp_path / "cxrg.toml").read_text()
    config = config.replace('weights = "weights"', 'weights = "weights"\nlut = "lut.json"')
    (tmp_path / "cxrg.toml").write_text(config)
    assert cxrg("cxrg lut show --out atlas.png") == 0 and (tmp_path / "atlas.png").stat().st_size > 50_000
    # 3. weak supervision
    assert cxrg(f"cxrg curate --mimic-reports {mimic['root']} --chexpert {mimic['chexpert']} "
                f"--metadata {mimic['metadata']} --out runs/curate") == 0
    assert (tmp_path / "runs/curate/locations.png").is_file()
    assert (tmp_path / "runs/curate/summary.md").is_file()
    with (tmp_path / "runs/curate/manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for k, row in enumerate(rows):  # the study images, in the MIMIC-CXR-JPG layout
        path = jpg_root / row["image_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.random.default_rng(k).random((70, 60)) * 255).astype(np.uint8)).save(path)
    # 4. tuning
    assert cxrg("cxrg tune") == 0
    assert (tmp_path / "runs/tune/loss_curve.png").is_file()
    assert (tmp_path / "weights/tuned_embeddings.safetensors").is_file()
    # 5. Table 1
    assert cxrg("cxrg bench --models ldm,ldm-frozen,biovil,biovil-t,oracle,prior --dataset ms-cxr-loc") == 0
    table1 = tmp_path / "runs/bench-ms-cxr-loc"
    assert (table1 / "results.md").is_file() and (table1 / "results.png").is_file()
    assert list((table1 / "ms-cxr-loc").glob("*_loc.csv")) and (table1 / "ms-cxr-loc/dropped.csv").is_file()
    assert "not run: model 'biovil' is not installed" in (table1 / "results.md").read_text()
    # 6. Table 2
    assert cxrg("cxrg bench --models ldm,ldm-frozen,biovil,biovil-t,oracle,prior --dataset vindr-cxr") == 0
    assert (tmp_path / "runs/bench-vindr-cxr/results.md").is_file()
    # 7. Table 6: grounded classification (MS-CXR-loc pneumothorax against healthy images)
    positives = next((table1 / "ms-cxr-loc").glob("*_loc.csv"))
    for k in range(3):
        Image.fromarray(np.full((64, 64), 60 + 40 * k, np.uint8)).save(tmp_path / f"healthy{k}.png")
    (tmp_path / "healthy.csv").write_text("image\nhealthy0.png\nhealthy1.png\nhealthy2.png\n")
    assert cxrg(f"cxrg classify --positives {positives} --images {jpg_root} --negatives healthy.csv "
                f"--negatives-images . --out runs/classify --draws 4 --resamples 200") == 0
    assert (tmp_path / "runs/classify/results.md").is_file()
    assert (tmp_path / "runs/classify/auroc.csv").is_file()
    assert cxrg('cxrg ground image.png "left pleural effusion"') == 1  # no image.png: one clear line
    assert "image not found" in capsys.readouterr().err
