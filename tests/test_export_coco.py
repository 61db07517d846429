"""`cxrg export RUN_DIR`: COCO ground truth and results (read by pycocotools) and DICOM SEG per scored pair,
from a real `cxrg bench` run on a small generic dataset of DICOM and PNG radiographs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cxrg_test_support import read_csv, run_cli
from export_support import make_dicom
from PIL import Image

from cxrg.export.coco import GROUND_TRUTH, results_name, write_coco
from cxrg.export.regions import detections
from cxrg.export.run import full_size

# (image file, kind, (rows, columns), prompt, category, boxes xywh); boxes far apart so that the oracle's
# Gaussians never merge at half their maximum
SAMPLES = [
    ("dx1.dcm", "DX", (96, 80), "left lower pneumonia", "Pneumonia", [(10, 50, 20, 24)]),
    ("dx1.dcm", "DX", (96, 80), "right pleural effusion", "Pleural Effusion", [(50, 10, 20, 30)]),
    ("cr1.dcm", "CR", (90, 100), "bilateral lower pneumonia", "Pneumonia",
     [(8, 50, 22, 30), (70, 52, 20, 28)]),
    ("sc1.dcm", "SC", (80, 80), "right apical pneumothorax", "Pneumothorax", [(30, 6, 24, 20)]),
    ("film.png", "PNG", (70, 90), "left pleural effusion", "Pleural Effusion", [(50, 30, 30, 25)]),
]


def make_dataset(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True)
    made = set()
    rows = []
    for k, (name, kind, shape, prompt, category, boxes) in enumerate(SAMPLES):
        if name not in made:
            if kind == "PNG":
                Image.fromarray(np.random.default_rng(k).integers(0, 255, shape, dtype=np.uint8)).save(
                    images / name)
            else:
                make_dicom(images / name, kind, shape, seed=k)
            made.add(name)
        for x, y, w, h in boxes:
            rows.append({"image": name, "prompt": prompt, "x": x, "y": y, "w": w, "h": h,
                         "category": category, "image_width": shape[1], "image_height": shape[0]})
    annotations = root / "boxes.csv"
    with annotations.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return annotations, images


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    annotations, images = make_dataset(root)
    out = root / "run"
    assert run_cli("bench", "--models", "oracle,prior", "--dataset", "generic", "--annotations",
                   str(annotations), "--images", str(images), "--out", str(out), "--resamples", "100",
                   "--exact-prompt", "--no-report") == 0
    return out


def test_coco_files_load_and_the_oracle_scores_ap_1(bench_run, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    result = write_coco(bench_run, tmp_path / "coco")
    assert {p.name for p in result.written} == {GROUND_TRUTH, results_name("oracle"), results_name("prior")}
    truth = COCO(str(tmp_path / "coco" / GROUND_TRUTH))
    assert len(truth.getImgIds()) == len(SAMPLES)
    assert sorted(c["name"] for c in truth.loadCats(truth.getCatIds())) == ["Pleural Effusion", "Pneumonia",
                                                                          "Pneumothorax"]
    boxes = sorted(tuple(a["bbox"]) for a in truth.loadAnns(truth.getAnnIds()))
    assert boxes == sorted(tuple(float(v) for v in b) for *_, bs in SAMPLES for b in bs)
    image = truth.loadImgs(1)[0]
    assert (image["sample_id"], image["height"], image["width"], image["prompt"]) == (
        "dx1:0", 96, 80, "left lower pneumonia")
    oracle = truth.loadRes(str(tmp_path / "coco" / results_name("oracle")))
    assert len(oracle.getAnnIds()) == sum(len(bs) for *_, bs in SAMPLES)  # one box per true box
    evaluation = COCOeval(truth, oracle, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)  # AP at IoU 0.5
    prior = truth.loadRes(str(tmp_path / "coco" / results_name("prior")))
    assert all(0.5 <= a["score"] <= 1.0 for a in prior.loadAnns(prior.getAnnIds()))
    assert result.exported == 2 * len(SAMPLES) and [r for r in result.skipped if r["model"]] == []


def test_oracle_boxes_are_the_half_max_extent_of_each_gaussian(bench_run, tmp_path):
    write_coco(bench_run, tmp_path)
    truth = json.loads((tmp_path / GROUND_TRUTH).read_text())
    results = json.loads((tmp_path / results_name("oracle")).read_text())
    by_image = {img["sample_id"]: img["id"] for img in truth["images"]}
    found = [r for r in results if r["image_id"] == by_image["dx1:0"]]
    assert len(found) == 1 and found[0]["score"] == pytest.approx(1.0)
    x, y, w, h = found[0]["bbox"]
    # box (10, 50, 20, 24), sigma = extent/3: half max at 1.1774 sigma from the centre, 0.785 of the extent
    assert w == pytest.approx(20 * 0.785, abs=1.01) and h == pytest.approx(24 * 0.785, abs=1.01)
    assert x + w / 2 == pytest.approx(20, abs=0.51) and y + h / 2 == pytest.approx(62, abs=0.51)


def test_detections_of_a_box_model_are_its_boxes():
    """MAIRA-2's map: 1 inside its boxes, 0 elsewhere in the centre square, NaN outside it."""
    heat = np.zeros((100, 140), dtype=np.float32)
    heat[:, :20] = np.nan
    heat[:, 120:] = np.nan
    heat[10:30, 25:60] = 1
    heat[50:90, 80:110] = 1
    assert detections(heat) == [(25.0, 10.0, 35.0, 20.0, 1.0), (80.0, 50.0, 30.0, 40.0, 1.0)]
    assert detections(np.full((5, 5), np.nan)) == [] and detections(np.zeros((5, 5))) == []


def test_full_size_brings_a_saved_map_back_to_the_image_grid():
    small = np.zeros((4, 5), dtype=np.float32)
    small[1:3, 2:4] = 1
    small[:, 0] = np.nan
    big = full_size(small, (40, 50))
    assert big.shape == (40, 50) and np.nanmax(big) == 1 and np.nanmin(big) == 0
    assert np.isnan(big[:, :5]).all() and np.isfinite(big[:, 10:]).all()
    x, y, w, h, _ = detections(big)[0]
    assert (x, y, w, h) == (20.0, 10.0, 20.0, 20.0)  # the bright cells' edges, scaled by 10
    np.testing.assert_array_equal(full_size(small, (4, 5)), np.where(np.isnan(small), np.nan, small))


def test_export_dicom_seg_writes_dicom_sources_and_skips_the_rest(bench_run, capsys):
    code = run_cli("export", str(bench_run), "--format", "dicom-seg")
    captured = capsys.readouterr()
    assert code == 0
    out = bench_run / "export" / "dicom-seg"
    segs = sorted(p.name for p in out.glob("*.seg.dcm"))
    assert segs == sorted(f"{sid}.{model}.seg.dcm".replace(":", "%3A") for sid in ("dx1:0", "dx1:1", "cr1:0",
                                                                                    "sc1:0")
                          for model in ("oracle", "prior"))
    assert "dicom-seg: 8 (model, sample) pairs written, 2 skipped (2 source is not DICOM)" in captured.err
    skipped = read_csv(out / "skipped.csv")
    assert [(r["model"], r["sample_id"], r["reason"]) for r in skipped] == [
        ("oracle", "film:0", "source is not DICOM"), ("prior", "film:0", "source is not DICOM")]
    seg = pydicom.dcmread(out / "dx1%3A1.oracle.seg.dcm")
    source = pydicom.dcmread(bench_run.parent / "images" / "dx1.dcm", stop_before_pixels=True)
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == \
        source.SOPInstanceUID
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert 'prompt "right pleural effusion"' in seg.SegmentSequence[0].SegmentDescription
    config = json.loads((bench_run / "config.json").read_text())
    fingerprint = config["config"]["fingerprints"]["models"]["oracle"]
    assert f"weights_fingerprint={fingerprint}" in str(
        seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters)
    # the region segment is the oracle's half-max region around the true box (50, 10, 20, 30)
    region = seg.pixel_array.reshape(2, 96, 80)[1] > 0
    rows, cols = np.nonzero(region)
    assert (cols.min() + cols.max() + 1) / 2 == pytest.approx(60, abs=0.6)
    assert (rows.min() + rows.max() + 1) / 2 == pytest.approx(25, abs=0.6)


def test_export_counts_failed_pairs_and_refuses_bad_folders(bench_run, tmp_path, capsys):
    rows = read_csv(bench_run / "per_sample.csv")
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(bench_run, copy)
    for row in rows:  # one pair failed in this copy
        if row["model"] == "prior" and row["sample_id"] == "sc1:0":
            row.update(status="failed", error="CxrgError: broken", cnr="", miou="")
    with (copy / "per_sample.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert run_cli("export", str(copy), "--format", "coco", "--out", str(tmp_path / "c")) == 0
    err = capsys.readouterr().err
    assert "coco: 9 (model, sample) pairs written, 1 skipped (1 not scored)" in err
    assert read_csv(tmp_path / "c" / "skipped.csv")[0]["reason"].startswith("not scored: failed")
    assert run_cli("export", str(copy), "--format", "nifti") == 2
    assert "unknown export format 'nifti'" in capsys.readouterr().err
    assert run_cli("export", str(tmp_path / "nowhere"), "--format", "coco") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run folder not found" in err


def test_export_from_maps_saved_at_a_reduced_size(tmp_path):
    """Maps kept at 24 px on the longer side are brought back to the image grid: the oracle's boxes still
    match every true box at IoU 0.5, and the SEG is on the source's grid."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotations, images = make_dataset(tmp_path)
    run = tmp_path / "run"
    assert run_cli("bench", "--models", "oracle", "--dataset", "generic", "--annotations", str(annotations),
                   "--images", str(images), "--out", str(run), "--resamples", "100", "--exact-prompt",
                   "--no-report", "--heatmap-size", "24") == 0
    assert max(np.load(next((run / "heatmaps" / "oracle").glob("*.npz")))["heatmap"].shape) <= 24
    write_coco(run, tmp_path / "coco")
    truth = COCO(str(tmp_path / "coco" / GROUND_TRUTH))
    evaluation = COCOeval(truth, truth.loadRes(str(tmp_path / "coco" / results_name("oracle"))), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[1] == pytest.approx(1.0)
    assert run_cli("export", str(run), "--format", "dicom-seg") == 0
    seg = pydicom.dcmread(run / "export" / "dicom-seg" / "cr1%3A0.oracle.seg.dcm")
    assert (seg.Rows, seg.Columns) == (90, 100)
