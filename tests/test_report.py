"""`cxrg report`: the HTML report of a bench run (table, gallery data, overlays, NaN marking, failures)."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import MS_CXR_SAMPLES, read_csv, run_cli
from PIL import Image

from cxrg.bench.heatmap_store import HeatmapStore
from cxrg.bench.reports import _cell
from cxrg.errors import InputError
from cxrg.report import write_report
from cxrg.report.imaging import (
    NAN_DARK,
    NAN_LIGHT,
    THUMB_SIDE,
    heat_png,
    heat_rgba,
    mask_rgba,
    nan_hatch,
    window,
)
from cxrg.report.page import json_for_script
from cxrg.report.synthetic import synthetic_run

XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def bench(annotations: Path, images: Path, out: Path, models: str = "oracle,prior") -> Path:
    code = run_cli("bench", "--models", models, "--dataset", "ms-cxr", "--annotations", str(annotations),
                   "--images", str(images), "--out", str(out), "--resamples", "200", "--exact-prompt")
    assert code == 0  # --exact-prompt: the prompts as written, so that prior fails on some (the display)
    return out


def page_data(report: Path) -> dict:
    text = report.read_text(encoding="utf-8")
    match = re.search(r'<script id="cxrg-data" type="application/json">(.*?)</script>', text, re.S)
    assert match
    return json.loads(match.group(1))


def picture(run: Path, url: str) -> np.ndarray:
    assert url.startswith("report_files/")
    with Image.open(run / url) as im:
        return np.asarray(im.convert("RGBA"))


@pytest.fixture
def ms_cxr_run(ms_cxr, tmp_path) -> Path:
    """`cxrg bench --models oracle,prior` on the MS-CXR-format fixture; most prior prompts fail (no location
    in the prompt format), which is what the failure display needs."""
    annotations, images = ms_cxr
    return bench(annotations, images, tmp_path / "run")


def test_report_command_writes_page_and_pictures(ms_cxr_run, capsys):
    capsys.readouterr()
    assert run_cli("report", str(ms_cxr_run)) == 0
    report = ms_cxr_run / "report.html"
    assert capsys.readouterr().out.strip() == report.resolve().as_uri()
    data = page_data(report)
    assert data["models"] == ["oracle", "prior"] and data["metrics"] == ["cnr", "miou"]
    ids = ["d1:0", "d1:1", "d2:0", "d3:0", "d4:0", "d5:0", "d6:0", "d7:0"]
    assert [s["id"] for s in data["samples"]] == ids
    assert data["categories"] == ["Pleural Effusion", "Pneumonia", "Pneumothorax"]
    assert len(data["images"]) == 7  # d1's two phrases share one picture
    for s in data["samples"]:
        for m in s["m"]:
            for key in ("h", "k"):
                if key in m:
                    assert (ms_cxr_run / m[key]).is_file()
    fetches = r"""(src|href)=["']?(https?:)?//|url\(|@import"""
    assert not re.search(fetches, report.read_text())  # nothing comes from the network
    assert not (ms_cxr_run / ".report_files.partial").exists()


def test_summary_table_matches_summary_json(ms_cxr_run):
    text = write_report(ms_cxr_run).read_text(encoding="utf-8")
    summary = json.loads((ms_cxr_run / "summary.json").read_text())
    table = text[text.index('<table id="summary-table">'):text.index("</table>", text.index("summary-table"))]
    for row in summary["rows"]:
        if row["mean"] is None:
            continue
        assert html.escape(_cell(row)) + f' <span class="n">n={row["n"]}</span>' in table
    for header in ("CNR<br>oracle", "CNR<br>prior", "mIoU<br>oracle", "mIoU<br>prior"):
        assert header in table
    assert '<tr class="average"><th>Average</th>' in table
    assert "prior: 2 of 8 samples scored, 6 failed" in text  # results.md's notes
    assert re.search(r'<img id="chart" src="report_files/results.png"', text)


def test_samples_carry_metrics_boxes_and_status(ms_cxr_run):
    data = page_data(write_report(ms_cxr_run))
    rows = {(r["model"], r["sample_id"]): r for r in read_csv(ms_cxr_run / "per_sample.csv")}
    expected_boxes = {}
    for dicom_id, _, _, boxes, (h, w) in MS_CXR_SAMPLES:
        expected_boxes.setdefault(dicom_id, []).append((boxes, (h, w)))
    for s in data["samples"]:
        dicom_id, k = s["id"].split(":")
        boxes, (h, w) = expected_boxes[dicom_id][int(k)]
        assert s["boxes"] == [list(map(float, b)) for b in boxes]
        image = data["images"][s["img"]]
        assert (image["w"], image["h"]) == (w, h)
        for model, m in zip(data["models"], s["m"], strict=True):
            row = rows[(model, s["id"])]
            if row["error"]:
                assert m["s"] == "failed" and m["r"] == row["error"] and "h" not in m
                assert m["cnr"] is None and m["miou"] is None
            else:
                assert m["s"] == "ok" and m["r"] == ""
                assert m["cnr"] == pytest.approx(float(row["cnr"]), abs=1e-4)
                assert m["miou"] == pytest.approx(float(row["miou"]), abs=1e-4)


def test_failed_rows_shown_with_reason(ms_cxr_run):
    text = write_report(ms_cxr_run).read_text(encoding="utf-8")
    failed = [r for r in read_csv(ms_cxr_run / "per_sample.csv") if r["error"]]
    assert len(failed) == 6
    section = text[text.index('<section id="failures">'):]
    assert "Failed and skipped (6)" in section
    for row in failed:
        assert (f'<tr class="failed"><td>prior</td><td>{row["sample_id"]}</td><td>{row["category"]}</td>'
                f"<td>failed</td><td>{html.escape(row['error'])}</td></tr>") in section


def test_skipped_samples_and_unrun_model_are_listed(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    run = tmp_path / "run"
    weights = tmp_path / "no-weights"
    weights.mkdir()
    assert run_cli("bench", "--models", "oracle,ldm", "--dataset", "ms-cxr", "--annotations",
                   str(annotations), "--images", str(images), "--out", str(run), "--resamples", "200",
                   "--weights", str(weights)) == 0  # the LDM's weights are missing: the model is not run
    rows = read_csv(run / "per_sample.csv")
    with (run / "per_sample.csv").open("w", newline="") as handle:  # as if the run stopped after 5 samples
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[:5])
    text = write_report(run).read_text(encoding="utf-8")
    data = page_data(run / "report.html")
    statuses = [s["m"][0]["s"] for s in data["samples"]]
    assert statuses == ["ok"] * 5 + ["skipped"] * 3
    assert "the run stopped before this sample" in data["samples"][-1]["m"][0]["r"]
    assert all(s["m"][1]["s"] == "skipped" and s["m"][1]["r"].startswith("model not run:")
               for s in data["samples"])
    assert '<td colspan="2">all 8 samples</td><td>skipped</td>' in text


def test_overlay_geometry_puts_the_heat_on_the_box(ms_cxr_run):
    """The oracle's Gaussian sits on the box: its hottest overlay pixel, scaled from the saved map's size
    to the original image (the page stretches both over the same frame), falls inside the box."""
    data = page_data(write_report(ms_cxr_run))
    store = HeatmapStore(ms_cxr_run)
    for s in data["samples"]:
        if len(s["boxes"]) != 1:
            continue
        oracle = s["m"][0]
        saved, (h, w) = store.load("oracle", s["id"])
        overlay = picture(ms_cxr_run, oracle["h"])
        assert overlay.shape[:2] == saved.shape  # one overlay pixel per saved map pixel
        image = data["images"][s["img"]]
        assert (image["h"], image["w"]) == (h, w)
        red = overlay[..., 0].astype(int) - overlay[..., 2].astype(int)
        row, col = np.unravel_index(np.argmax(red), red.shape)
        y, x = (row + 0.5) * h / saved.shape[0], (col + 0.5) * w / saved.shape[1]
        bx, by, bw, bh = s["boxes"][0]
        assert bx - 1 <= x <= bx + bw + 1 and by - 1 <= y <= by + bh + 1, s["id"]
        with Image.open(ms_cxr_run / image["t"]) as thumb:
            assert max(thumb.size) <= THUMB_SIDE
            assert thumb.size[0] / thumb.size[1] == pytest.approx(w / h, rel=0.05)


def test_nan_regions_are_hatched_in_overlay_and_mask():
    heat = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1))
    heat[:, :12] = np.nan
    missing = ~np.isfinite(heat)
    dark = nan_hatch(heat.shape)
    for rgba in (heat_rgba(heat), mask_rgba(heat)[0]):
        assert (rgba[missing & dark] == NAN_DARK).all() and (rgba[missing & ~dark] == NAN_LIGHT).all()
        assert dark[missing].any() and (~dark[missing]).any()
    overlay = heat_rgba(heat)[~missing]
    assert not ((overlay == NAN_DARK).all(axis=1) | (overlay == NAN_LIGHT).all(axis=1)).any()  # jet only
    assert (overlay[:, 3] < 255).any()  # low values let the radiograph through
    # the palette PNG the page uses draws the same picture
    with Image.open(io.BytesIO(heat_png(heat))) as im:
        assert im.mode == "P"
        drawn = np.asarray(im.convert("RGBA")).astype(int)
    assert np.abs(drawn - heat_rgba(heat).astype(int)).max() <= 6  # 254 levels instead of 256
    mask, threshold = mask_rgba(heat)
    above = np.isfinite(heat) & (heat > threshold)
    assert (mask[above][:, :3] == 255).all() and (mask[np.isfinite(heat) & ~above][:, :3] == 0).all()


def test_nan_of_a_saved_map_reaches_the_page(ms_cxr_run):
    store = HeatmapStore(ms_cxr_run)
    saved, (h, w) = store.load("oracle", "d3:0")
    full = np.array(Image.fromarray(saved).resize((w, h)))
    full[:, : w // 4] = np.nan  # as a model that cropped the image would leave it
    store.save("oracle", "d3:0", full)
    data = page_data(write_report(ms_cxr_run))
    sample = next(s for s in data["samples"] if s["id"] == "d3:0")
    overlay = picture(ms_cxr_run, sample["m"][0]["h"])
    mask = picture(ms_cxr_run, sample["m"][0]["k"])
    left = overlay[:, : overlay.shape[1] // 4 - 1]
    assert ((left == NAN_DARK).all(axis=-1) | (left == NAN_LIGHT).all(axis=-1)).all()
    assert (mask[:, : mask.shape[1] // 4 - 1, 3] == 255).all()


def test_phrases_and_errors_are_escaped(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    with annotations.open("a", newline="") as handle:
        csv.writer(handle).writerow(["d3", "Pneumonia", XSS, "files/p10/p10000032/s50414267/d3.jpg",
                                     10, 10, 20, 20, 100, 100])
    run = bench(annotations, images, tmp_path / "run")
    text = write_report(run).read_text(encoding="utf-8")
    assert XSS not in text and "<script>window" not in text and "<img src=x" not in text
    assert html.escape(XSS) in text  # the failures table
    assert XSS in [s["prompt"] for s in page_data(run / "report.html")["samples"]]


def test_json_for_script_cannot_close_the_script():
    text = json_for_script({"a": "</script><script>alert(1)</script>", "b": "\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><script>alert(1)</script>", "b": "\u2028&"}


def test_window_stretches_percentiles():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.4, 0.6, (100, 100)).astype(np.float32)
    image[0, 0] = 1.0  # a burnt-in marker must not set the contrast
    shown = window(image)
    assert shown.dtype == np.uint8
    assert shown[1:, 1:].min() == 0 and shown[1:, 1:].max() == 255
    assert np.percentile(shown, 50) == pytest.approx(127, abs=10)
    assert (window(np.full((4, 4), 0.3, np.float32)) == 0).all()  # a flat picture stays flat


def test_paging_data_for_many_samples(tmp_path):
    run = synthetic_run(tmp_path / "syn", samples=60, models=("oracle", "prior", "m3", "m4"))
    data = page_data(write_report(run))
    assert len(data["samples"]) == 60 and len(data["images"]) == 30
    assert all(len(s["m"]) == 4 for s in data["samples"])
    text = (run / "report.html").read_text(encoding="utf-8")
    assert '<option value="25" selected>25</option>' in text
    nan_model = [s["m"][3] for s in data["samples"] if s["m"][3]["s"] == "ok"]
    overlay = picture(run, nan_model[0]["h"])
    assert (overlay[:, 0] == NAN_DARK).all(axis=-1).any()  # the 4th model's cropped band is hatched
    pictures = sum(1 for _ in (run / "report_files").rglob("*.*"))
    ok = sum(m["s"] == "ok" for s in data["samples"] for m in s["m"])
    assert pictures == 2 * ok + 2 * 30 + 1  # overlays and masks, thumbnails and large images, the chart


def test_embedded_report_is_one_file(ms_cxr_run):
    write_report(ms_cxr_run)
    report = write_report(ms_cxr_run, embed=True)
    assert not (ms_cxr_run / "report_files").exists()
    data = page_data(report)
    assert data["images"][0]["t"].startswith("data:image/jpeg;base64,")
    assert data["samples"][0]["m"][0]["h"].startswith("data:image/png;base64,")


def test_moved_dataset_is_a_note_and_bad_folders_are_one_line(ms_cxr_run, tmp_path, capsys):
    config = json.loads((ms_cxr_run / "config.json").read_text())
    config["config"]["images"] = str(tmp_path / "gone")
    (ms_cxr_run / "config.json").write_text(json.dumps(config))
    text = write_report(ms_cxr_run).read_text(encoding="utf-8")
    assert "images folder not found" in text and "--images DIR" in text
    assert len(page_data(ms_cxr_run / "report.html")["samples"]) == 8  # still every scored sample
    with pytest.raises(InputError, match="not a bench run folder"):
        write_report(tmp_path)
    assert run_cli("report", str(tmp_path / "nowhere")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cxrg: error: run folder not found") and "\n" not in err
