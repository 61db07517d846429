"""`cxrg bench` end to end on a small MS-CXR-format dataset made here, checked against independent values."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from cxrg_test_support import MS_CXR_SAMPLES, mimic_path, read_csv, run_cli
from PIL import Image

from cxrg.bench.bootstrap import class_indices, percentile_interval
from cxrg.bench.datasets import read_generic, read_ms_cxr


def bench(*args: str) -> int:
    return run_cli("bench", *args)




def independent_scores(boxes_xywh, shape):
    """Oracle heatmap, min-max, CNR and mIoU computed here from first principles (loops and masks)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    heat = np.zeros(shape)
    mask = np.zeros(shape, bool)
    for x, y, bw, bh in boxes_xywh:
        g = np.exp(-0.5 * (((xs - (x + bw / 2)) / (bw / 3)) ** 2 + ((ys - (y + bh / 2)) / (bh / 3)) ** 2))
        heat = np.maximum(heat, g)
        mask[max(y, 0):min(y + bh, h), max(x, 0):min(x + bw, w)] = True
    heat = (heat - heat.min()) / (heat.max() - heat.min())
    inside, outside = heat[mask], heat[~mask]
    cnr = (inside.mean() - outside.mean()) / math.sqrt(inside.var() + outside.var())
    ious = [((heat > t) & mask).sum() / ((heat > t) | mask).sum() for t in (0.1, 0.2, 0.3, 0.4, 0.5)]
    return cnr, float(np.mean(ious))


def test_oracle_bench_matches_independent_values(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    code = bench("--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(annotations),
                 "--images", str(images), "--out", str(out), "--resamples", "1000", "--seed", "3")
    assert code == 0
    rows = read_csv(out / "per_sample.csv")
    assert len(rows) == len(MS_CXR_SAMPLES) and not any(r["error"] for r in rows)
    expected_by_class: dict[str, list[tuple[float, float]]] = {}
    for row, (dicom_id, category, phrase, boxes, shape) in zip(rows, MS_CXR_SAMPLES, strict=True):
        assert row["sample_id"].startswith(f"{dicom_id}:") and row["phrase"] == phrase
        cnr, miou = independent_scores(boxes, shape)
        assert float(row["cnr"]) == pytest.approx(cnr, rel=1e-5)
        assert float(row["miou"]) == pytest.approx(miou, rel=1e-5)
        expected_by_class.setdefault(category, []).append((cnr, miou))
    assert rows[0]["sample_id"] == "d1:0" and rows[1]["sample_id"] == "d1:1"

    summary = {(r["category"], r["metric"]): r for r in read_csv(out / "summary.csv")}
    for category, values in expected_by_class.items():
        for k, metric in enumerate(("cnr", "miou")):
            class_values = np.array([v[k] for v in values])
            row = summary[(category, metric)]
            assert float(row["mean"]) == pytest.approx(class_values.mean(), rel=1e-5)
            assert int(row["n"]) == len(values)
            indices = class_indices(category, len(values), 1000, seed=3)
            low, high = percentile_interval(class_values[indices].mean(axis=1))
            assert float(row["ci_low"]) == pytest.approx(low, rel=1e-5)
            assert float(row["ci_high"]) == pytest.approx(high, rel=1e-5)
    for metric in ("cnr", "miou"):
        class_means = [float(summary[(c, metric)]["mean"]) for c in expected_by_class]
        assert float(summary[("Average", metric)]["mean"]) == pytest.approx(np.mean(class_means))

    as_json = json.loads((out / "summary.json").read_text())
    assert as_json["counts"]["oracle"] == {"samples": 8, "scored": 8, "failed": 0, "cnr_undefined": 0,
                                           "miou_undefined": 0}
    table = (out / "results.md").read_text()
    assert "| Class | CNR oracle | mIoU oracle |" in table and "**Average**" in table
    assert (out / "results.png").stat().st_size > 10_000
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["seed"] == 3 and config["environment"]["packages"]["numpy"]


def test_bad_samples_are_recorded_and_excluded(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    with annotations.open("a", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["gone", "Pneumonia", "missing image", mimic_path("gone"), 1, 1, 5, 5, 100, 100])
        writer.writerow(["esc", "Pneumonia", "escapes", "../../etc/passwd", 1, 1, 5, 5, 100, 100])
        writer.writerow(["bad", "Pneumonia", "bad number", mimic_path("d1"), "x1", 1, 5, 5, 100, 120])
        writer.writerow(["d1", "Pneumonia", "wrong size", mimic_path("d1"), 1, 1, 5, 5, 999, 999])
    out = tmp_path / "run"
    assert bench("--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(annotations),
                 "--images", str(images), "--out", str(out), "--resamples", "200") == 0
    rows = {r["sample_id"]: r for r in read_csv(out / "per_sample.csv")}
    assert len(rows) == len(MS_CXR_SAMPLES) + 4
    assert "No such file" in rows["gone:0"]["error"] or "not found" in rows["gone:0"]["error"]
    assert "escapes the images root" in rows["esc:0"]["error"]
    assert "x='x1' is not a number" in rows["bad:0"]["error"]
    assert "annotations say 999x999" in rows["d1:2"]["error"]
    counts = json.loads((out / "summary.json").read_text())["counts"]["oracle"]
    assert counts["samples"] == 12 and counts["scored"] == 8 and counts["failed"] == 4
    pneumonia = [r for r in read_csv(out / "summary.csv") if r["category"] == "Pneumonia"]
    assert {int(r["n"]) for r in pneumonia} == {3}
    assert "8 of 12 samples scored, 4 failed" in (out / "results.md").read_text()


def test_rerun_resumes_without_recomputing(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    args = ("--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(annotations),
            "--images", str(images), "--out", str(out), "--resamples", "200")
    assert bench(*args) == 0
    rows = read_csv(out / "per_sample.csv")
    rows[0]["miou"] = "0.123"  # a finished sample: must be kept, not recomputed
    with (out / "per_sample.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert bench(*args) == 0
    again = read_csv(out / "per_sample.csv")
    assert again[0]["miou"] == "0.123" and len(again) == len(rows)
    assert bench(*args, "--limit", "3") == 0  # a subset of the same run: reuses the finished rows
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 3
    other = annotations.with_name("other.csv")
    other.write_text(annotations.read_text())
    assert bench("--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(other),
                 "--images", str(images), "--out", str(out)) == 2  # another dataset in the same folder


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert bench("--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(tmp_path / "no.csv"),
                 "--images", str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("cxrg: error: annotations file not found") and err.count("\n") == 1
    (tmp_path / "bad.csv").write_text("dicom_id,path\n1,2\n")
    assert bench("--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(tmp_path / "bad.csv"),
                 "--images", str(tmp_path)) == 1
    assert "lacks column(s) category_name, label_text, x" in capsys.readouterr().err
    assert bench("--models", "nope", "--dataset", "ms-cxr", "--annotations", str(tmp_path / "bad.csv"),
                 "--images", str(tmp_path)) == 1


def test_generic_csv(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((60, 80), np.uint16)).save(images / "a.png")
    (tmp_path / "data.csv").write_text(
        "image,prompt,x,y,w,h,category\n"
        "a.png,left effusion,50,30,20,20,Pleural Effusion\n"
        "a.png,left effusion,10,10,5,5,Pleural Effusion\n"
        "a.png,cardiomegaly,30,20,20,20,\n")
    data = read_generic(tmp_path / "data.csv", images)
    assert [(s.sample_id, s.category, len(s.boxes)) for s in data.samples] == [
        ("a:0", "Pleural Effusion", 2), ("a:1", "all", 1)]
    assert data.samples[0].boxes[0].tolist() == [50, 30, 70, 50]
    out = tmp_path / "run"
    assert bench("--models", "oracle", "--dataset", "generic", "--annotations", str(tmp_path / "data.csv"),
                 "--images", str(images), "--out", str(out), "--resamples", "200") == 0
    assert len(read_csv(out / "per_sample.csv")) == 2


def test_ms_cxr_split_column(tmp_path):
    images = tmp_path / "imgs"
    (tmp_path / "v11.csv").write_text(
        "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split\n"
        "a,Edema,edema,a.jpg,1,1,4,4,10,10,test\n"
        "b,Edema,edema,b.jpg,1,1,4,4,10,10,train\n")
    assert [s.sample_id for s in read_ms_cxr(tmp_path / "v11.csv", images, split="test").samples] == ["a:0"]
    assert len(read_ms_cxr(tmp_path / "v11.csv", images).samples) == 2


class _Silent:
    """A model that answers without locating anything for one class (like MAIRA-2 without a box)."""

    from cxrg.registry import ModelCard

    card = ModelCard(name="silent", version="1", licence="MIT", description="", metrics=("miou",))

    def load(self, weights_dir=None, device="cpu"):
        pass

    def heatmap(self, query):
        from cxrg.errors import NoPrediction

        if "effusion" in query.prompt:
            raise NoPrediction("no prediction: answered without a box")
        return np.ones(query.image.shape, np.float32)


def test_no_prediction_is_recorded_counted_per_class_and_cnr_left_empty(ms_cxr, tmp_path):
    from cxrg.bench.datasets import read_ms_cxr
    from cxrg.bench.harness import run_benchmark
    from cxrg.bench.reports import markdown_table
    from cxrg.runs import RunDir

    annotations, images = ms_cxr
    data = read_ms_cxr(annotations, images)
    run = RunDir(tmp_path / "r", "bench", {})
    result = run_benchmark({"silent": _Silent()}, data, run, resamples=200, seed=0)
    counts = result.summary["counts"]["silent"]
    assert counts["no_prediction"] == 2 and counts["no_prediction_by_class"] == {"Pleural Effusion": 2}
    assert counts["failed"] == 2 and counts["scored"] == 6
    rows = list(result.rows.values())
    assert all(r["cnr"] == "" for r in rows)  # the card says mIoU only
    assert {r["error"] for r in rows if r["error"]} == {"no prediction: answered without a box"}
    assert "(2 of them no prediction: Pleural Effusion 2)" in markdown_table(result.summary)
    # Table 3 both ways: "no prediction" left out (counted above) and scored as mIoU 0
    assert {r["metric"] for r in result.summary["rows"]} == {"miou", "miou_no_box_0"}
    n = {(r["metric"], r["category"]): r["n"] for r in result.summary["rows"]}
    assert n[("miou", "Pleural Effusion")] == 1 and n[("miou_no_box_0", "Pleural Effusion")] == 3
    assert n[("miou", "Average")] == 6 and n[("miou_no_box_0", "Average")] == 8
    assert "mIoU (no box = 0)" in markdown_table(result.summary)
