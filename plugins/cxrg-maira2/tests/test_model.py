"""The model behind the protocol with MAIRA-2's answers given as text; the weights-missing path; and a
bench run that records "no prediction" per class and leaves CNR empty."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from cxrg_maira2 import report
from cxrg_maira2.model import Maira2, NoPredictionError
from PIL import Image

from cxrg.cli.main import run
from cxrg.errors import MissingWeightsError
from cxrg.registry import Query, discover
from cxrg.testing import check_model, synthetic_image

# answers in MAIRA-2's format, by the phrase's last word
ANSWERS = {
    "effusion": "<obj>Left pleural effusion<box><x55><y60><x90><y92></box></obj>",
    "opacities": "<obj>Bilateral opacities<box><x5><y30><x40><y80></box>"
                 "<box><x60><y30><x95><y80></box></obj>",
    "pneumothorax": "No pneumothorax is seen.",
}


@pytest.fixture
def scripted(monkeypatch):
    """Maira2 with its two weight-bound steps replaced: no loading, and a scripted answer."""
    monkeypatch.setattr(Maira2, "load", lambda self, weights_dir=None, device="cpu": None)
    monkeypatch.setattr(Maira2, "generate", lambda self, image, phrase: ANSWERS[phrase.split()[-1]])


def test_discovered_and_card_says_miou_only():
    entry = discover()["maira-2"]
    assert (entry.distribution, entry.value) == ("cxrg-maira2", "cxrg_maira2.model:Maira2")
    assert Maira2.card.metrics == ("miou",) and not Maira2.card.uses_ground_truth
    assert "7B" in Maira2.card.notes and "cannot run" in Maira2.card.notes


def test_conforms_with_scripted_answers(scripted):
    check_model(Maira2(), prompt="left lower pleural effusion")


def test_heatmap_is_the_mapped_boxes(scripted):
    heat = Maira2().heatmap(Query(image=synthetic_image((300, 400)), prompt="bilateral opacities"))
    # square 300 at column 50; <x5> -> 0.055 * 300 + 50 = 66.5 -> 66, <y30> -> 91, <x40> -> 171, <y80> -> 241
    assert np.isnan(heat[:, :50]).all() and np.isnan(heat[:, 350:]).all()
    assert heat[91, 66] == 1 and heat[90, 66] == 0 and heat[91, 65] == 0 and heat[240, 170] == 1
    assert heat[240, 171] == 0 and np.nansum(heat) == 2 * (171 - 66) * (241 - 91)


def test_answer_without_a_box_is_no_prediction(scripted):
    with pytest.raises(NoPredictionError, match=r"^no prediction: MAIRA-2 answered without a box: "
                                                r"'No pneumothorax is seen.'"):
        Maira2().heatmap(Query(image=synthetic_image((64, 64)), prompt="right pneumothorax"))


def test_missing_weights_name_the_folder(tmp_path):
    with pytest.raises(MissingWeightsError) as caught:
        Maira2().load(weights_dir=tmp_path)
    assert caught.value.one_line() == (
        f"maira-2: the model folder lacks config.json, *.safetensors ({tmp_path}/microsoft/maira-2); "
        f"accept the licence on the Hub page of microsoft/maira-2, then on a machine with internet: "
        f"hf download microsoft/maira-2 --local-dir {tmp_path}/microsoft/maira-2")
    checked = subprocess.run([sys.executable, "-m", "cxrg", "models", "check", "maira-2", "--weights",
                              str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1
    assert checked.stdout.startswith("maira-2: error: maira-2: the model folder lacks")
    listed = subprocess.run([sys.executable, "-m", "cxrg", "models", "list"], capture_output=True, text=True,
                            timeout=120)
    assert "maira-2: cxrg-maira2 0.1.0\n" in listed.stdout


def test_bench_records_no_prediction_per_class_and_leaves_cnr_empty(scripted, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    rows = [("a", "left pleural effusion", "Pleural Effusion", (200, 110, 150, 120)),
            ("b", "bilateral opacities", "Lung Opacity", (30, 80, 120, 150)),
            ("c", "right pneumothorax", "Pneumothorax", (20, 10, 90, 80)),
            ("d", "left pleural effusion", "Pleural Effusion", (10, 10, 40, 40))]
    for name, *_ in rows:
        Image.fromarray((synthetic_image((300, 400)) * 255).astype(np.uint8)).save(images / f"{name}.png")
    with (tmp_path / "data.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("image", "prompt", "category", "x", "y", "w", "h"),
                                      *[(f"{n}.png", p, c, *box) for n, p, c, box in rows]])
    out = tmp_path / "run"
    try:
        run(["bench", "--models", "maira-2,oracle", "--dataset", "generic", "--annotations",
             str(tmp_path / "data.csv"), "--images", str(images), "--out", str(out), "--resamples", "200"])
    except SystemExit as exc:
        assert not exc.code
    with (out / "per_sample.csv").open(newline="") as handle:
        maira = {r["sample_id"]: r for r in csv.DictReader(handle) if r["model"] == "maira-2"}
    no_box = "no prediction: MAIRA-2 answered without a box: 'No pneumothorax is seen.'"
    assert maira["c:0"]["error"] == no_box
    assert all(r["cnr"] == "" for r in maira.values())
    # a: <x55><y60><x90><y92> -> 0.555 * 300 + 50 = 216.5 -> 216, 181, 321, 277; truth (200, 110)-(350, 230)
    inter = (321 - 216) * (230 - 181)
    union = (321 - 216) * (277 - 181) + 150 * 120 - inter
    assert float(maira["a:0"]["miou"]) == pytest.approx(inter / union)
    counts = json.loads((out / "summary.json").read_text())["counts"]["maira-2"]
    assert (counts["scored"], counts["failed"]) == (3, 1) and "cnr_undefined" not in counts
    per_class = report.count_by_class(out / "per_sample.csv")
    assert {c: (e.samples, e.no_prediction, e.other_errors) for c, e in per_class.items()} == {
        "Lung Opacity": (1, 0, 0), "Pleural Effusion": (2, 0, 0), "Pneumothorax": (1, 1, 0)}
    capsys.readouterr()
    report.main([str(out)])
    table = capsys.readouterr().out
    assert "| Pneumothorax | 1 | 1 | 0 | nan | 0.000 |" in table
    assert "| **All samples (pooled)** | 4 | 1 | 0 |" in table


def test_report_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        report.main([str(tmp_path)])
    assert exited.value.code == 1
    assert capsys.readouterr().err == (
        f"cxrg-maira2-report: error: no per_sample.csv in the run folder {tmp_path}; "
        "pass the --out folder of a `cxrg bench` run\n")
