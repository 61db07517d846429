"""`study create` matches bench rows to samples on the sample id and the dataset's phrase, not on the prompt a
model was given (issue 25, item 2), and shows clinicians the phrase as typed."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

from cxrg_test_support import read_csv, run_cli


def bench(annotations: Path, images: Path, out: Path, model: str = "prior") -> Path:
    # no --exact-prompt: the prior takes vocabulary prompts, so under the cxrg protocol's prompt style
    # "small left effusion" is asked as "left pleural pleural effusion": its row's prompt differs from the
    # dataset's phrase (the case issue 25 found)
    assert run_cli("bench", "--models", model, "--dataset", "ms-cxr", "--annotations", str(annotations),
                   "--images", str(images), "--out", str(out), "--resamples", "100",
                   "--protocol", "cxrg") == 0
    return out


def cases(study: Path) -> dict[str, dict]:
    con = sqlite3.connect(study / "study.sqlite")
    con.row_factory = sqlite3.Row
    rows = {r["sample_id"]: dict(r) for r in con.execute("SELECT * FROM cases")}
    con.close()
    return rows


def test_rewritten_prompts_are_one_sample_and_captions_show_the_phrase_as_typed(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    run = bench(annotations, images, tmp_path / "bench")
    rows = {r["sample_id"]: r for r in read_csv(run / "per_sample.csv")}
    assert rows["d1:1"]["prompt"] == "left pleural pleural effusion"  # what the prior was asked
    assert rows["d1:1"]["phrase"] == "small left effusion"
    capsys.readouterr()
    study = tmp_path / "study"
    assert run_cli("study", "create", "--runs", str(run), "--models", "prior", "--out", str(study)) == 0
    err = capsys.readouterr().err
    assert "phrase" not in err.split("study in")[0]  # nothing skipped for its phrase
    shown = cases(study)
    scored = {sid for sid, row in rows.items() if row["status"] in ("scored", "undefined")}
    assert set(shown) == scored and {"d1:1", "d4:0"} <= scored  # both were read into another prompt
    assert shown["d1:1"]["phrase"] == "small left effusion"  # as typed, not "left pleural pleural effusion"
    assert shown["d4:0"]["phrase"] == "left pleural effusion"


def test_a_real_phrase_mismatch_is_skipped_naming_both_texts(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    run = bench(annotations, images, tmp_path / "bench")
    path = run / "per_sample.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames, list(reader)
    for row in rows:
        if row["sample_id"] == "d1:1":
            row["phrase"] = "small right effusion"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    study = tmp_path / "study"
    assert run_cli("study", "create", "--runs", str(run), "--models", "prior", "--out", str(study)) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert ("skipped 1 sample(s): the run scored another phrase than the dataset has (e.g. d1:1: prior "
            "scored 'small right effusion', the dataset has 'small left effusion')") in err
    assert "d1:1" not in cases(study)


def test_rows_without_a_phrase_column_match_on_the_prompt_or_its_reading():
    from cxrg.bench.datasets import Sample
    from cxrg.study.create import phrase_mismatch

    sample = Sample(sample_id="d1:1", image_path=None, category="Pleural Effusion",
                    prompt="small left effusion")
    assert phrase_mismatch({"prompt": "small left effusion"}, sample) is None
    assert phrase_mismatch({"prompt": "left pleural pleural effusion"}, sample) is None  # its reading
    assert phrase_mismatch({"prompt": "right pleural pleural effusion"}, sample) == (
        "was asked 'right pleural pleural effusion', the dataset has 'small left effusion'")
    assert phrase_mismatch({"prompt": "x", "phrase": "small left effusion"}, sample) is None
