"""`cxrg curate` end to end: a MIMIC-CXR-layout mini corpus with malformed files, a generic CSV, the IU
reports (when ../shared/data is present) and MS-CXR -> MS-CXR-loc read back by the bench reader."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from cxrg_test_support import run_cli
from PIL import Image

from cxrg.curation.extractors import RulesExtractor
from cxrg.curation.mscxr import to_ms_cxr_loc
from cxrg.curation.pipeline import Curator
from cxrg.curation.reports import read_generic, read_iu, read_mimic
from cxrg.vocab import LOCATIONS, PATHOLOGIES, Prompt

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IU_REPORTS = SHARED / "reports" / "indiana_reports.csv"

LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
          "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
          "Pneumothorax", "Support Devices"]


def cli(argv: list[str]) -> int:
    return run_cli(*argv)


def report(findings: str | None, impression: str | None) -> str:
    text = "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n" \
           " INDICATION:  ___-year-old with shortness of breath.\n\n COMPARISON:  ___\n\n"
    if findings is not None:
        text += f" FINDINGS:\n \n {findings}\n \n"
    if impression is not None:
        text += f" IMPRESSION:\n \n {impression}\n"
    return text


# study -> (positive labels, view positions, report text or bytes or None for a missing file, -1.0 labels)
CORPUS: dict[int, tuple[tuple[str, ...], tuple[str, ...], str | bytes | None]] = {
    50000001: (("Pleural Effusion", "Support Devices"), ("PA", "LATERAL"),
               report("There is a small left pleural effusion. No pneumothorax.",
                      "Small left pleural effusion.")),
    50000002: (("Pneumothorax",), ("PA",), report("Small right apical pneumothorax. Heart size is normal.",
                                                  "Small right apical pneumothorax.")),
    50000003: (("Edema",), ("AP",), report("Mild pulmonary edema.", "Mild pulmonary edema.")),
    50000004: (("Edema", "Cardiomegaly"), ("PA",), report("Cardiomegaly and mild pulmonary edema.", None)),
    50000005: ((), ("PA",), report("The lungs are clear.", "No acute cardiopulmonary process.")),
    50000006: (("Pneumonia",), ("PA",), "FINDINGS: Right lower lobe pneumonia \xe9".encode("latin-1")),
    50000007: (("Atelectasis",), ("PA",), ""),
    50000008: (("Atelectasis",), ("PA",), "                FINAL REPORT\n Bibasilar atelectasis.\n"),
    50000009: (("Atelectasis",), ("PA",), None),
    50000010: (("Pneumonia",), ("PA",), report("No focal consolidation.", "No pneumonia.")),
    50000011: (("Edema",), ("PA",), report(None, "Moderate pulmonary edema has increased.")),
    50000012: (("Atelectasis",), ("PA",), report("Mild atelectasis.", "Atelectasis.")),
    50000013: (("Cardiomegaly",), ("PA",), report("Moderate cardiomegaly is stable.", "Cardiomegaly.")),
    50000014: (("Lung Opacity",), ("PA",), report("Opacity in the left lower lobe is new.",
                                                  "Right lower lobe opacity is unchanged.")),
    50000015: (("Consolidation",), ("PA", "PA"), report("Consolidation at both lung bases.", None)),
    50000016: (("Pneumothorax",), ("PA",), b"FINDINGS: left pneumothorax\x00\x00\x00"),
}
UNCERTAIN_STUDY = 50000017  # Pneumothorax -1.0 only
BAD_VALUE_STUDY = 50000018  # a label cell that is not a number


@pytest.fixture
def mimic(tmp_path: Path) -> dict[str, Path]:
    """MIMIC-CXR reports (files/p10/p100000NN/sSTUDY.txt), the CheXpert labels and the metadata CSVs."""
    root = tmp_path / "mimic-cxr-reports"
    label_rows, meta_rows = [], []
    studies = dict(CORPUS)
    studies[UNCERTAIN_STUDY] = ((), ("PA",), report("Possible small left apical pneumothorax.", None))
    studies[BAD_VALUE_STUDY] = ((), ("PA",), report("Left pneumothorax.", None))
    for k, (study, (positive, views, text)) in enumerate(sorted(studies.items())):
        subject = 10000000 + k
        folder = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            (folder / f"s{study}.txt").write_bytes(text)
        elif text is not None:
            (folder / f"s{study}.txt").write_text(text)
        values = {name: ("1.0" if name in positive else "") for name in LABELS}
        if not positive:
            values["No Finding"] = "1.0"
        if study == UNCERTAIN_STUDY:
            values["Pneumothorax"] = "-1.0"
        if study == BAD_VALUE_STUDY:
            values["Pneumothorax"] = "yes"
        label_rows.append({"subject_id": subject, "study_id": study, **values})
        for j, view in enumerate(views):
            meta_rows.append({"dicom_id": f"d{study}-{j}", "subject_id": subject, "study_id": study,
                              "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": view,
                              "Rows": 3050, "Columns": 2539})
    chexpert = tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
    with chexpert.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["subject_id", "study_id", *LABELS])
        writer.writeheader()
        writer.writerows(label_rows)
    metadata = tmp_path / "mimic-cxr-2.0.0-metadata.csv"
    with metadata.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(meta_rows[0]))
        writer.writeheader()
        writer.writerows(meta_rows)
    return {"root": root, "chexpert": chexpert, "metadata": metadata}


def curate_mimic(mimic: dict[str, Path], **options) -> tuple:
    total, stream = read_mimic(mimic["root"], mimic["chexpert"], mimic["metadata"], **options)
    return total, Curator(RulesExtractor()).run(stream)


def test_mimic_mini_corpus_counts_add_up_and_every_skip_has_its_reason(mimic):
    total, result = curate_mimic(mimic)
    assert total == len(CORPUS) + 2 == result.reports.total
    prompts = {s.report_id: s.prompt for s in result.samples}
    assert prompts == {
        "s50000001": "left pleural pleural effusion",
        "s50000002": "right apical pneumothorax",
        "s50000011": "pulmonary edema",
        "s50000013": "cardiomegaly",
        "s50000014": "bilateral lower lung opacity",   # left + right lower lobe, merged across sentences
        "s50000015": "bibasilar consolidation",
    }
    assert dict(result.reports.skipped) == {
        "no PA image": 1,                                     # 50000003 (AP only)
        "more than one of the 8 labels positive": 1,          # 50000004
        "no positive label among the 8 pathologies": 2,       # 50000005, the uncertain-only 50000017
        "bad encoding (not UTF-8 at byte 37)": 1,             # 50000006
        "empty report": 1,                                    # 50000007
        "no findings or impression section": 1,               # 50000008
        "report file missing": 1,                             # 50000009
        "label only negated": 1,                              # 50000010
        "no location found": 1,                               # 50000012
        "bad encoding (binary content)": 1,                   # 50000016
        "malformed label value": 1,                           # 50000018
    }
    assert result.reports.kept == 6 and result.adds_up()
    assert result.sentences.total == result.sentences.kept + sum(result.sentences.skipped.values())
    report_skips = [s for s in result.skips if s.level == "report"]
    assert len(report_skips) == sum(result.reports.skipped.values())
    assert {s.report_id for s in report_skips if s.reason == "no PA image"} == {"s50000003"}
    first = next(s for s in result.samples if s.report_id == "s50000001")
    assert first.image_id == "d50000001-0"
    assert first.image_path == "files/p10/p10000000/s50000001/d50000001-0.jpg"
    assert first.sentences == ["There is a small left pleural effusion.", "Small left pleural effusion."]
    assert first.sample_id == "s50000001:pleural_effusion"


def test_mimic_options_views_uncertain_labels_and_study_list(mimic):
    _, result = curate_mimic(mimic, views=("PA", "AP"), uncertain_positive=True,
                             studies={"50000003", "50000017"})
    assert {s.report_id: s.prompt for s in result.samples} == {"s50000003": "pulmonary edema",
                                                              "s50000017": "left apical pneumothorax"}
    assert result.reports.skipped["not in the allowed study list"] == len(CORPUS)
    assert result.adds_up()


def test_label_rule_all_and_sentence_unit(mimic):
    total, stream = read_mimic(mimic["root"], mimic["chexpert"], mimic["metadata"])
    result = Curator(RulesExtractor(), label_rule="all", unit="sentence").run(stream)
    by_id = {s.sample_id: s.prompt for s in result.samples}
    assert by_id["s50000004:edema:0"] == "pulmonary edema"
    assert by_id["s50000004:cardiomegaly:0"] == "cardiomegaly"
    assert by_id["s50000014:lung_opacity:0"] == "left lower lung opacity"
    assert by_id["s50000014:lung_opacity:1"] == "right lower lung opacity"
    assert result.labels.total == result.labels.kept + sum(result.labels.skipped.values())
    assert result.adds_up()


def test_cli_writes_manifest_skip_log_summary_and_figure(mimic, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(["curate", "--mimic-reports", str(mimic["root"]), "--chexpert", str(mimic["chexpert"]),
                "--metadata", str(mimic["metadata"]), "--extractor", "rules", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "6 samples" in printed.out and "outputs in" in printed.err
    for name in ("manifest.csv", "manifest.jsonl", "skips.csv", "summary.json", "summary.md", "locations.csv",
                 "locations.png", "config.json", "log.txt"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["prompt"] for r in rows][:2] == ["left pleural pleural effusion", "right apical pneumothorax"]
    assert set(rows[0]) >= {"sample_id", "image_id", "image_path", "pathology", "locations", "prompt",
                            "sentence", "report_id", "extractor"}
    assert rows[0]["locations"] == "left pleural" and rows[0]["extractor"] == "rules"
    for row in rows:
        assert Prompt.parse(row["prompt"]) == Prompt(tuple(row["locations"].split(";")), row["pathology"])
    jsonl = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert jsonl[4]["locations"] == ["bilateral lower"] and len(jsonl[4]["sentences"]) == 2
    info = json.loads((out / "summary.json").read_text())
    assert info["counts_add_up"] and info["samples"] == 6 and info["reports"]["total"] == 18
    assert info["samples_per_location"]["bilateral lower"] == 1
    skips = list(csv.DictReader((out / "skips.csv").open()))
    report_rows = [s for s in skips if s["level"] == "report"]
    assert len(report_rows) == info["reports"]["total"] - info["reports"]["kept"]
    sentence_rows = [s for s in skips if s["level"] == "sentence"]
    assert len(sentence_rows) == info["sentences"]["total"] - info["sentences"]["kept"]
    negated = {(s["report_id"], s["reason"], s["detail"]) for s in sentence_rows if s["reason"] == "negated"}
    assert negated == {
        ("s50000010", "negated", "No focal consolidation."), ("s50000010", "negated", "No pneumonia.")}
    table = list(csv.DictReader((out / "locations.csv").open()))
    assert [r["location"] for r in table] == list(LOCATIONS)
    assert {k: int(v) for k, v in table[-1].items() if k != "location"}["Edema"] == 1   # pulmonary
    with Image.open(out / "locations.png") as image:
        assert image.size[0] > 600 and image.size[1] > 900


def test_manifest_is_what_cxrg_tune_reads(mimic, tmp_path):
    from cxrg.tuning.data import read_manifest

    out = tmp_path / "run"
    assert cli(["curate", "--mimic-reports", str(mimic["root"]), "--chexpert", str(mimic["chexpert"]),
                "--metadata", str(mimic["metadata"]), "--extractor", "rules", "--out", str(out)]) == 0
    images = tmp_path / "mimic-cxr-jpg"
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    for row in rows:
        (images / row["image_path"]).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (64, 64)).save(images / row["image_path"])
    for name in ("manifest.csv", "manifest.jsonl"):
        manifest = read_manifest(out / name, images)
        assert len(manifest.samples) == 6 and not manifest.skipped
        assert manifest.samples[4].locations == ("bilateral lower",)


def test_cli_input_errors_are_one_line(tmp_path, capsys):
    assert cli(["curate", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give exactly one input" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("uid,text\n1,hello\n")
    assert cli(["curate", "--reports", str(bad), "--extractor", "rules", "--out", str(tmp_path / "y")]) == 1
    assert "lacks column(s) id, label" in capsys.readouterr().err


def test_generic_csv_with_and_without_headers_and_bad_rows(tmp_path):
    path = tmp_path / "reports.csv"
    rows = [
        ("r1", "FINDINGS: Trace pneumothorax on the left. IMPRESSION: Small left pneumothorax.",
         "Pneumothorax", ""),
        ("r2", "Small pleural effusions are present bilaterally. Mild cardiomegaly.", "Effusion",
         "img/r2.png"),
        ("r3", "Left basilar opacity, likely atelectasis.", "atelectasis|Support Devices", ""),
        ("", "No text", "Edema", ""),
        ("r1", "duplicate", "Edema", ""),
        ("r6", "Clear lungs.", "No Finding", ""),
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "image"])
        writer.writerows(rows)
    total, stream = read_generic(path)
    result = Curator(RulesExtractor()).run(stream)
    assert total == 6 == result.reports.total
    assert {s.report_id: s.prompt for s in result.samples} == {
        "r1": "left pneumothorax", "r2": "bilateral pleural pleural effusion", "r3": "left base atelectasis"}
    assert next(s for s in result.samples if s.report_id == "r2").image_path == "img/r2.png"
    assert dict(result.reports.skipped) == {"malformed row (empty id)": 1, "duplicate report id": 1,
                                            "no positive label among the 8 pathologies": 1}


def test_generic_csv_row_with_bytes_that_are_not_utf8_is_skipped(tmp_path):
    path = tmp_path / "reports.csv"
    path.write_bytes(b"id,text,label\nr1,Left pneumothorax.,Pneumothorax\nr2,Right effusion \xe9.,Effusion\n")
    total, stream = read_generic(path)
    result = Curator(RulesExtractor()).run(stream)
    assert [s.prompt for s in result.samples] == ["left pneumothorax"]
    assert dict(result.reports.skipped) == {"bad encoding (not UTF-8)": 1}


MS_CXR_ROWS = [
    # dicom_id, category, phrase, x, y, w, h
    ("d1", "Pneumonia", "right lower lobe opacity", 20, 60, 30, 25),
    ("d1", "Pleural Effusion", "small left effusion", 60, 80, 30, 30),
    ("d2", "Pneumonia", "bilateral opacities", 10, 40, 25, 40),
    ("d2", "Pneumonia", "bilateral opacities", 60, 45, 25, 40),
    ("d3", "Pneumonia", "patchy opacity", 30, 30, 40, 20),
    ("d4", "Pleural Effusion", "left pleural effusion", 70, 70, 40, 35),
    ("d5", "Pneumothorax", "apical pneumothorax", 5, 5, 40, 30),
    ("d6", "Pneumothorax", "right pneumothorax", 0, 0, 50, 95),
    ("d7", "Cardiomegaly", "enlarged cardiac silhouette", 30, 40, 50, 40),
    ("d8", "Consolidation", "right lower lobe airspace process", 20, 60, 30, 25),
    ("d9", "Lung Lesion", "left upper lobe nodule", 20, 20, 10, 10),
]


def write_ms_cxr(path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                         "image_width", "image_height", "split"])
        for dicom_id, category, phrase, x, y, w, h in MS_CXR_ROWS:
            writer.writerow([dicom_id, category, phrase, f"files/p10/p10000032/s50414267/{dicom_id}.jpg",
                             x, y, w, h, 100, 120, "test"])


def test_ms_cxr_to_ms_cxr_loc_is_read_back_by_the_bench_reader(tmp_path, capsys):
    from cxrg.bench.datasets import read_ms_cxr

    source = tmp_path / "MS_CXR_Local_Alignment_v1.1.0.csv"
    write_ms_cxr(source)
    result = to_ms_cxr_loc(source, RulesExtractor())
    assert {p.text: p.prompt for p in result.kept} == {
        "right lower lobe opacity": "right lower pneumonia",
        "small left effusion": "left pleural pleural effusion",
        "bilateral opacities": "bilateral pneumonia",
        "left pleural effusion": "left pleural pleural effusion",
        "right pneumothorax": "right pneumothorax",
        "enlarged cardiac silhouette": "cardiomegaly",
        "right lower lobe airspace process": "right lower consolidation",
    }
    assert dict(result.dropped) == {"no location word": 1, "location without a side": 1,
                                    "category is not one of the 8 pathologies": 1}
    out = tmp_path / "loc"
    assert cli(["curate", "--ms-cxr", str(source), "--extractor", "rules", "--out", str(out)]) == 0
    assert "10 phrases: 7 kept, 3 dropped" in capsys.readouterr().out
    target = out / "MS_CXR_Local_Alignment_v1.1.0_loc.csv"
    header = next(csv.reader(target.open()))
    assert header == ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                      "image_height", "split", "original_label_text"]
    dataset = read_ms_cxr(target, tmp_path / "images", split="test")
    assert len(dataset.samples) == 7
    two_boxes = next(s for s in dataset.samples if s.prompt == "bilateral pneumonia")
    assert two_boxes.boxes.shape == (2, 4) and two_boxes.category == "Pneumonia"
    dropped = list(csv.DictReader((out / "dropped.csv").open()))
    assert {d["label_text"]: d["reason"] for d in dropped}["apical pneumothorax"] == "location without a side"


@pytest.mark.skipif(not IU_REPORTS.is_file(), reason="../shared/data (IU reports) not present")
def test_iu_reports_end_to_end():
    total, stream = read_iu(IU_REPORTS)
    result = Curator(RulesExtractor()).run(stream)
    assert total == result.reports.total == 3851
    assert result.adds_up()
    assert len(result.samples) > 350
    per = {p: sum(1 for s in result.samples if s.pathology == p) for p in PATHOLOGIES}
    assert per["Cardiomegaly"] > 100 and per["Lung Opacity"] > 100 and per["Atelectasis"] > 40
    prompts = {s.report_id: s.prompt for s in result.samples}
    assert all(Prompt.parse(p).locations for p in prompts.values())
    locations = {loc for s in result.samples for loc in s.locations}
    assert len(locations) >= 20
    assert result.reports.skipped["no positive label among the 8 pathologies"] > 2000
