"""The documented command lines, exactly as written, from a folder whose cxrg.toml points at small files in
the real formats and at tiny weights (issue: the paper end to end)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import run_line as cxrg
from PIL import Image

from cxrg.anatomy.lut import Lut
from cxrg.ldm.tiny import write_tiny
from cxrg.tuning.phantoms import write_phantom_set


@pytest.fixture
def study(tmp_path, ms_cxr, monkeypatch) -> Path:
    annotations, images = ms_cxr
    write_tiny(tmp_path / "weights", seed=0)
    manifest = write_phantom_set(tmp_path / "curated", 4, Lut.default())
    Image.fromarray((np.random.default_rng(0).random((90, 80)) * 255).astype(np.uint8)).save(
        tmp_path / "image.png")
    (tmp_path / "cxrg.toml").write_text(f'''
weights = "weights"

[ldm]  # a shorter schedule than the paper's, to keep the test quick
inference_steps = 20
capture_steps = [6, 12]

[choices]  # the paper protocol otherwise; RadGraph-XL (its extractor) is not installed here
extractor = "rules"

[ms-cxr]
annotations = "{annotations}"
images = "{images}"

[tune]
manifest = "{manifest}"
images = "{manifest.parent / 'images'}"
''')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CXRG_HOME", str(tmp_path / "home"))
    for name in ("CXRG_EMBEDDINGS", "CXRG_LUT", "CXRG_DTYPE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_the_three_documented_lines(study, capsys):
    assert cxrg("cxrg tune") == 0
    err = capsys.readouterr().err
    assert "manifest: 4 rows, 4 samples, 0 skipped" in err and "installed as the default" in err
    assert (study / "weights" / "tuned_embeddings.safetensors").is_file()
    assert (study / "runs" / "tune" / "losses.csv").read_text().count("\n") == 5  # 1 epoch of 4 samples

    assert cxrg("cxrg bench --models ldm,biovil-t --dataset ms-cxr-loc") == 0
    err = capsys.readouterr().err
    assert "model biovil-t not run: model 'biovil-t' is not installed: it comes with the plugin" in err
    assert "MS-CXR-loc" in err and "phrases kept" in err
    bench = study / "runs" / "bench-ms-cxr-loc"
    rows = (bench / "per_sample.csv").read_text().splitlines()
    assert rows[0].startswith("model,sample_id") and all(r.startswith("ldm,") for r in rows[1:])
    summary = json.loads((bench / "summary.json").read_text())
    assert summary["counts"]["ldm"]["failed"] == 0 and "biovil-t" in summary["model_errors"]
    prompts = {r.split(",")[3] for r in rows[1:]}
    assert "right lower pneumonia" in prompts and "left pleural pleural effusion" in prompts
    assert list((bench / "ms-cxr-loc").glob("*_loc.csv"))

    assert cxrg('cxrg ground image.png "left pleural effusion"') == 0
    result = json.loads((study / "grounding" / "image.ldm.json").read_text())
    assert result["model"] == "ldm" and result["image_size"] == {"height": 90, "width": 80}
    assert result["phrase"] == "left pleural effusion" and result["prompt"] == "left pleural pleural effusion"
    assert (study / "grounding" / "image.ldm.heatmap.npy").is_file()


def test_missing_configuration_and_weights_say_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CXRG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CXRG_EMBEDDINGS", raising=False)
    assert cxrg("cxrg tune") == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrg: error: `tune.manifest` is not configured") and "[tune] / manifest = " in err
    assert err.count("\n") == 1
    assert cxrg("cxrg bench --models ldm,biovil-t --dataset ms-cxr-loc") == 2
    assert "`ms-cxr.annotations` is not configured" in capsys.readouterr().err
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "image.png")
    assert cxrg('cxrg ground image.png "left pleural effusion"') == 1
    err = capsys.readouterr().err
    assert "the ldm model needs its weights" in err and "cxrg weights fetch" in err and "--model prior" in err
    assert err.count("\n") == 1
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
