"""Issue-3 integration: the prior model, VinDr-CXR synthetic prompts, `cxrg ground` and `cxrg lut`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cxrg_test_support import run_cli as cli
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_anatomy import GOLD_HEADER, gold_rows, write_gold_csv

from cxrg.anatomy import Lut
from cxrg.bench.vindr import read_vindr
from cxrg.demo import demo_image_path
from cxrg.errors import InputError
from cxrg.images import ResizeCenterCrop
from cxrg.models.prior import PriorModel
from cxrg.registry import Query
from cxrg.testing import check_model


def prior_map(prompt: str, shape: tuple[int, int]) -> np.ndarray:
    model = PriorModel()
    model.load()
    return model.heatmap(Query(image=np.zeros(shape, np.float32), prompt=prompt))


def test_prior_conforms():
    check_model(PriorModel())


def test_prior_laterality_and_crop():
    left = prior_map("left lower pleural effusion", (600, 800))  # landscape: 400 px scaled, crop columns
    right = prior_map("right lower pleural effusion", (600, 800))
    assert left.shape == (600, 800) and left.dtype == np.float32
    assert np.nanargmax(left) % 800 > 400 > np.nanargmax(right) % 800  # patient's left = image right
    geometry = ResizeCenterCrop(512).geometry(600, 800)
    unseen = round(geometry.left / geometry.scale_x)  # columns cut off on each side: 128 model px = 100 px
    assert unseen == 100
    assert np.isnan(left[:, :unseen - 1]).all() and np.isnan(left[:, -unseen + 1:]).all()
    assert np.isfinite(left[:, unseen + 1:-unseen - 1]).all()


def test_prior_peak_matches_the_lut_gaussian_mapped_back():
    lut = Lut.default()
    g = lut["right apical"][0]
    heatmap = prior_map("right apical pneumothorax", (1000, 900))
    (x, y), = ResizeCenterCrop(512).points_from_model(np.array([[g.mu_x, g.mu_y]]), 1000, 900)
    peak_y, peak_x = np.unravel_index(np.nanargmax(heatmap), heatmap.shape)
    assert abs(peak_x + 0.5 - x) <= 1.5 and abs(peak_y + 0.5 - y) <= 1.5


def test_prior_prompts():
    bilateral = prior_map("bilateral apical pneumothorax", (512, 512))
    assert np.nanmax(bilateral[:, :256]) == pytest.approx(1, abs=0.02)
    assert np.nanmax(bilateral[:, 256:]) == pytest.approx(1, abs=0.02)
    heart = prior_map("cardiomegaly", (512, 512))
    assert np.array_equal(heart, prior_map("cardiomegaly cardiomegaly", (512, 512)))
    with pytest.raises(InputError, match="names no location"):
        prior_map("pneumonia", (64, 64))
    with pytest.raises(InputError, match="valid locations"):
        prior_map("upper left pneumonia", (64, 64))


def test_prior_uses_the_lut_in_force(tmp_path, monkeypatch):
    data = Lut.default().to_dict()
    for component in data["locations"]["left lower"]:
        component["mu_y"] = 100.0
    (tmp_path / "lut.json").write_text(json.dumps(data))
    monkeypatch.setenv("CXRG_LUT", str(tmp_path / "lut.json"))  # a default source, via cxrg.config
    monkeypatch.chdir(tmp_path)
    from cxrg.config import load_config
    from cxrg.loading import load_models

    loaded, _, used = load_models(["prior"], load_config(), None, "cpu", {})
    assert used["prior"] == {"lut": str(tmp_path / "lut.json")}
    heatmap = loaded["prior"].heatmap(Query(image=np.zeros((512, 512), np.float32),
                                            prompt="left lower pneumonia"))
    assert np.unravel_index(np.nanargmax(heatmap), heatmap.shape)[0] == 99  # pixel 99 has centre 99.5


# --------------------------------------------------------------------------------- VinDr-CXR


def write_dicom(path: Path, shape: tuple[int, int]) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 4096, shape, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def box_at(location: str, shape: tuple[int, int], lut: Lut, component: int = 0) -> list[float]:
    """The box (original pixels) whose eq.-6 Gaussian is exactly the LUT's: mu +- 3 sigma, mapped back."""
    g = lut[location][component]
    model_box = np.array([[g.mu_x - 3 * g.sigma_x, g.mu_y - 3 * g.sigma_y,
                           g.mu_x + 3 * g.sigma_x, g.mu_y + 3 * g.sigma_y]])
    return ResizeCenterCrop(lut.size).boxes_from_model(model_box, *shape)[0].tolist()


VINDR_HEADER = ["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"]


@pytest.fixture
def vindr(tmp_path):
    lut = Lut.default()
    images = tmp_path / "test"
    images.mkdir()
    shapes = {"img1": (1200, 1000), "img2": (900, 1100), "img3": (1000, 1000)}
    write_dicom(images / "img1.dicom", shapes["img1"])
    write_dicom(images / "img2.dicom", shapes["img2"])
    Image.fromarray(np.zeros(shapes["img3"], np.uint8)).save(images / "img3.png")
    rows = [
        ["img1", "R8", "Pleural effusion", *box_at("left lower", shapes["img1"], lut)],
        ["img1", "R9", "Pleural effusion", *box_at("left lower", shapes["img1"], lut)],  # 2nd reader
        ["img1", "R8", "Cardiomegaly", *box_at("cardiomegaly", shapes["img1"], lut)],
        ["img1", "R8", "Aortic enlargement", 10, 10, 50, 50],
        ["img2", "R10", "Pneumothorax", *box_at("left apical", shapes["img2"], lut)],
        ["img2", "R10", "Pneumothorax", *box_at("right apical", shapes["img2"], lut)],
        ["img2", "R10", "Infiltration", *box_at("right middle", shapes["img2"], lut)],
        ["img3", "R11", "Infiltration", *box_at("right lower", shapes["img3"], lut)],  # not Pneumonia
        ["img3", "R11", "No finding", "", "", "", ""],
        ["gone", "R11", "Atelectasis", 10, 10, 50, 50],
    ]
    annotations = tmp_path / "annotations_test.csv"
    with annotations.open("w", newline="") as handle:
        csv.writer(handle).writerows([VINDR_HEADER, *rows])
    (tmp_path / "image_labels_test.csv").write_text(
        "image_id,Lung tumor,Pneumonia,Tuberculosis,No finding\nimg1,0,0,0,0\nimg2,0,1,0,0\nimg3,0,0,0,1\n")
    return annotations, images


def test_vindr_reader_prompts_classes_and_counts(vindr):
    annotations, images = vindr
    dataset, notes = read_vindr(annotations, images, Lut.default())
    found = {(s.sample_id, s.category): (s.prompt, len(s.boxes), s.error) for s in dataset.samples}
    assert found == {
        ("gone:0", "Atelectasis"): ("", 1, found[("gone:0", "Atelectasis")][2]),
        ("img1:0", "Cardiomegaly"): ("cardiomegaly", 1, ""),
        ("img1:1", "Pleural Effusion"): ("left lower pleural effusion", 2, ""),
        ("img2:0", "Pneumonia"): ("right middle pneumonia", 1, ""),
        ("img2:1", "Pneumothorax"): ("bilateral apical pneumothorax", 2, ""),
    }
    assert "no image gone" in found[("gone:0", "Atelectasis")][2]
    assert notes == ["10 annotation rows: 7 in 5 samples of the benchmark classes, 3 of other classes "
                     "(incl. No finding)",
                     "Pneumonia: Infiltration/ILD boxes on 1 image(s) (any-finding rule)"]


def test_vindr_pneumonia_rules(vindr):
    annotations, images = vindr
    labels = annotations.with_name("image_labels_test.csv")
    labels.write_text("image_id,Pleural effusion,Pneumonia,Tuberculosis,No finding\n"
                      "img1,1,0,0,0\nimg2,0,1,0,0\nimg3,0,0,1,0\n")
    # img3 has an Infiltration box and only Tuberculosis: never Pneumonia. img2: Pneumonia = 1, both rules.
    any_finding, _ = read_vindr(annotations, images, Lut.default())
    narrow, notes = read_vindr(annotations, images, Lut.default(), pneumonia_rule="pneumonia-label")
    assert [s.sample_id for s in any_finding.samples if s.category == "Pneumonia"] == ["img2:0"]
    assert [s.sample_id for s in narrow.samples if s.category == "Pneumonia"] == ["img2:0"]
    # an Infiltration box on img1 (effusion labelled, no Pneumonia label) differs between the rules
    rows = annotations.read_text().splitlines()
    rows.append("img1,R8,Infiltration,100,100,300,300")
    annotations.write_text("\n".join(rows) + "\n")
    any_finding, _ = read_vindr(annotations, images, Lut.default())
    narrow, _ = read_vindr(annotations, images, Lut.default(), pneumonia_rule="pneumonia-label")
    assert sum(s.category == "Pneumonia" for s in any_finding.samples) == 2
    assert sum(s.category == "Pneumonia" for s in narrow.samples) == 1


def test_vindr_laterality_right_box_is_patient_left(vindr):
    dataset, _ = read_vindr(*vindr, Lut.default())
    effusion = next(s for s in dataset.samples if s.category == "Pleural Effusion")
    assert effusion.boxes[:, 0].min() > 500  # on the image's right half ...
    assert effusion.prompt.startswith("left ")  # ... is the patient's left


def test_bench_oracle_and_prior_on_vindr(vindr, tmp_path):
    annotations, images = vindr
    out = tmp_path / "run"
    assert cli("bench", "--models", "oracle,prior", "--dataset", "vindr-cxr", "--annotations",
               str(annotations), "--images", str(images), "--out", str(out), "--resamples", "500") == 0
    with (out / "per_sample.csv").open() as handle:
        rows = {(r["model"], r["sample_id"]): r for r in csv.DictReader(handle)}
    assert len(rows) == 10
    for sample_id in ("img1:0", "img1:1", "img2:0", "img2:1"):
        # the prior's Gaussian sits exactly on these boxes: strong positive contrast for both models
        assert float(rows[("prior", sample_id)]["cnr"]) > 0.5
        assert float(rows[("oracle", sample_id)]["cnr"]) > 1.0
    assert rows[("prior", "gone:0")]["error"] and rows[("oracle", "gone:0")]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["prior"]["failed"] == 1 and summary["counts"]["prior"]["scored"] == 4
    assert "dataset: 10 annotation rows" in (out / "log.txt").read_text()
    results = (out / "results.md").read_text()
    assert "| Atelectasis (n=1) † | - | - | - | - |" in results
    assert "- prior CNR: no value in Atelectasis; its Average is over the other 4 classes" in results


# ------------------------------------------------------------------------------------ commands


def test_ground_on_the_real_radiograph(tmp_path, capsys):
    image = demo_image_path()
    assert cli("ground", str(image), "left lower pleural effusion", "--model", "prior",
               "--out", str(tmp_path)) == 0
    heatmap = np.load(tmp_path / "RG1_UNCR.prior.heatmap.npy")
    assert heatmap.shape == (1955, 1841) and heatmap.dtype == np.float32
    assert np.isnan(heatmap[:40]).all() and np.isnan(heatmap[-40:]).all()  # portrait: crop top/bottom
    summary = json.loads((tmp_path / "RG1_UNCR.prior.json").read_text())
    assert summary["model"] == "prior" and summary["image_size"] == {"height": 1955, "width": 1841}
    assert summary["peak"]["x"] > 1841 / 2  # patient's left is the image's right
    box = summary["box"]
    assert box["x"] <= summary["peak"]["x"] < box["x"] + box["w"]
    assert (tmp_path / "RG1_UNCR.prior.overlay.png").stat().st_size > 50_000
    assert "peak at x=" in capsys.readouterr().out


def test_ground_reads_the_phrase_as_a_radiologist_does(tmp_path, capsys):
    image = demo_image_path()
    assert cli("ground", str(image), "Small left pleural effusion", "--model", "prior",
               "--out", str(tmp_path)) == 0
    summary = json.loads((tmp_path / "RG1_UNCR.prior.json").read_text())
    assert summary["phrase"] == "Small left pleural effusion"
    assert summary["prompt"] == "left pleural pleural effusion"
    assert summary["peak"]["x"] > 1841 / 2 and summary["peak"]["y"] > 1955 / 2  # the left base
    captured = capsys.readouterr()
    assert "read as 'left pleural pleural effusion'" in captured.err
    assert cli("ground", str(image), "left lower lobe nodule", "--model", "prior",
               "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "closest" in err
    assert cli("ground", str(image), "left pleural effusion", "--model", "prior", "--exact-prompt",
               "--out", str(tmp_path / "exact")) == 0
    exact = json.loads((tmp_path / "exact" / "RG1_UNCR.prior.json").read_text())
    assert exact["prompt"] == "left pleural effusion" and exact["peak"]["y"] < summary["peak"]["y"]


def test_ground_folder_records_bad_files(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((80, 60), 128, np.uint8)).save(folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    assert cli("ground", str(folder), "right upper pneumonia", "--model", "prior",
               "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "b.png" in err and "1 of 2 images grounded, 1 skipped" in err
    assert (tmp_path / "out" / "a.prior.json").exists()
    assert not (tmp_path / "out" / "b.prior.json").exists()


def test_ground_refuses_the_oracle_and_bad_prompts(tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(image)
    assert cli("ground", str(image), "left pneumonia", "--model", "oracle") == 2
    assert "needs ground-truth boxes" in capsys.readouterr().err
    assert cli("ground", str(image), "small effusion", "--model", "prior", "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["cxrg: 'small effusion': read as 'pleural effusion'",
                   "cxrg: error: prompt 'pleural effusion' names no location; the prior needs '<location> "
                   "<pathology>', e.g. 'left lower pleural effusion'"]


def test_lut_build_and_show(tmp_path):
    gold = tmp_path / "gold.csv"
    write_gold_csv(gold, gold_rows(), header=GOLD_HEADER)
    command = [sys.executable, "-m", "cxrg", "lut", "build", "--imagenome", str(gold),
               "--out", str(tmp_path / "lut.json")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LUT written to" in result.stdout
    lut = Lut.load(tmp_path / "lut.json")
    assert lut.metadata["build"]["used"] > 0 and not lut.metadata.get("approximation")
    assert cli("lut", "show", "--lut", str(tmp_path / "lut.json"), "--out", str(tmp_path / "atlas.png")) == 0
    assert (tmp_path / "atlas.png").stat().st_size > 100_000
