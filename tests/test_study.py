"""The reader study (Appendix J): a study made from real bench runs of the test data, its database, the
server's safety, and the statistics of `study analyse`."""

from __future__ import annotations

import csv
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import MS_CXR_HEADER, mimic_path, read_csv, run_cli
from PIL import Image

# Samples added to the `ms_cxr` fixture whose phrases are structured prompts, so that the image-blind prior
# scores them too (it scores only d4 and d6 of the fixture): 10 pairs both models scored = 20 items.
EXTRA_SAMPLES = [
    ("e1", "Pneumonia", "right lower pneumonia", (20, 60, 30, 25), (120, 100)),
    ("e2", "Pneumonia", "left upper pneumonia", (60, 20, 30, 30), (120, 100)),
    ("e3", "Pneumonia", "bibasilar pneumonia", (10, 70, 80, 30), (110, 100)),
    ("e4", "Pleural Effusion", "bilateral pleural effusion", (5, 80, 90, 30), (120, 110)),
    ("e5", "Pleural Effusion", "right costophrenic pleural effusion", (10, 90, 25, 20), (120, 100)),
    ("e6", "Pneumothorax", "left apical pneumothorax", (60, 5, 30, 25), (100, 100)),
    ("e7", "Pneumothorax", "right apical pneumothorax", (10, 5, 30, 25), (100, 100)),
    ("e8", "Edema", "bilateral edema", (10, 20, 80, 70), (100, 100)),
]
MODELS = ("oracle", "prior")
PAIRS = 10


def add_samples(annotations: Path, images: Path) -> None:
    with annotations.open("a", newline="") as handle:
        writer = csv.writer(handle)
        for k, (dicom_id, category, phrase, (x, y, w, h), (height, width)) in enumerate(EXTRA_SAMPLES):
            path = images / mimic_path(dicom_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(100 + k).integers(0, 255, size=(height, width), dtype=np.uint8)
            Image.fromarray(pixels).save(path, quality=95)
            writer.writerow([dicom_id, category, phrase, mimic_path(dicom_id), x, y, w, h, width, height])
    assert read_csv(annotations)[0].keys() == set(MS_CXR_HEADER)


def bench_runs(annotations: Path, images: Path, root: Path) -> list[Path]:
    """One bench run per model, like a study of a tuned LDM against a baseline scored separately."""
    runs = []
    for model in MODELS:
        out = root / f"bench-{model}"
        assert run_cli("bench", "--models", model, "--dataset", "ms-cxr", "--annotations", str(annotations),
                       "--images", str(images), "--out", str(out), "--resamples", "100",
                       "--exact-prompt") == 0  # prompts as written: the expected counts assume them
        runs.append(out)
    return runs


def build_study(ms_cxr, tmp_path: Path, per_class: int = 50, seed: int = 0) -> tuple[Path, list[Path]]:
    annotations, images = ms_cxr
    add_samples(annotations, images)
    runs = bench_runs(annotations, images, tmp_path)
    study = tmp_path / "study"
    assert run_cli("study", "create", "--runs", str(runs[0]), str(runs[1]), "--models", ",".join(MODELS),
                   "--per-class", str(per_class), "--seed", str(seed), "--out", str(study)) == 0
    return study, runs


@pytest.fixture
def study(ms_cxr, tmp_path) -> Path:
    return build_study(ms_cxr, tmp_path)[0]


def connect(study: Path) -> sqlite3.Connection:
    con = sqlite3.connect(study / "study.sqlite")
    con.row_factory = sqlite3.Row
    return con


@pytest.fixture
def server(study):
    from cxrg.study.server import make_server

    srv = make_server(study, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(port: int, method: str, path: str, body: object = None, headers: dict | None = None):
    """(status, parsed JSON or raw bytes); the path is sent exactly as given (no normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    sent = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=data, headers={**sent, **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(raw)
    return response.status, raw


# --- create ---------------------------------------------------------------------------------------------
def test_create_from_bench_runs_takes_what_each_class_has(ms_cxr, tmp_path, capsys):
    study, runs = build_study(ms_cxr, tmp_path, per_class=50)
    err = capsys.readouterr().err
    assert "Pneumonia: 3 of 50 cases drawn (only 3 eligible), 3 location group(s)" in err
    assert "Edema: 1 of 50 cases drawn (only 1 eligible)" in err
    assert "skipped 6 sample(s): prior failed on the sample" in err
    assert "10 cases x 2 models = 20 ratings per rater" in err
    con = connect(study)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
    assert {"meta", "models", "cases", "items", "raters", "ratings", "current_ratings"} <= tables
    assert [r["name"] for r in con.execute("SELECT name FROM models ORDER BY id")] == list(MODELS)
    cases = {r["sample_id"]: dict(r) for r in con.execute("SELECT * FROM cases")}
    assert set(cases) == {"d4:0", "d6:0"} | {f"e{k}:0" for k in range(1, 9)}
    assert cases["e3:0"]["location"] == "bibasilar" and cases["e3:0"]["category"] == "Pneumonia"
    assert cases["d6:0"]["location"] == "right"  # a structured prompt: its own location
    assert (cases["e4:0"]["height"], cases["e4:0"]["width"]) == (120, 110)
    items = con.execute("SELECT i.*, m.name FROM items i JOIN models m ON m.id = i.model_id").fetchall()
    assert len(items) == 2 * PAIRS
    per_sample = {(r["model"], r["sample_id"]): r for r in read_csv(runs[0] / "per_sample.csv")
                  + read_csv(runs[1] / "per_sample.csv")}
    for item in items:
        sample_id = con.execute("SELECT sample_id FROM cases WHERE id = ?", (item["case_id"],)).fetchone()[0]
        assert item["cnr"] == pytest.approx(float(per_sample[(item["name"], sample_id)]["cnr"]))
        assert item["miou"] == pytest.approx(float(per_sample[(item["name"], sample_id)]["miou"]))
        assert not any(model in item["heatmap_file"] for model in MODELS)  # blinded file names
        overlay = np.asarray(Image.open(study / item["heatmap_file"]))
        assert overlay.ndim == 3 and overlay.shape[2] == 4  # RGBA
    image = Image.open(study / cases["e4:0"]["image_file"])
    assert image.size == (110, 120) and image.mode == "L"
    pixels = np.asarray(image)
    assert pixels.min() == 0 and pixels.max() == 255  # percentile stretch
    # the study is self-contained: the runs can go
    for run in runs:
        for path in sorted(run.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    assert all((study / row["image_file"]).is_file() for row in cases.values())


def test_one_run_of_two_prompt_forms_is_one_phrase(ms_cxr, tmp_path, capsys):
    """prior is given the vocabulary form of each phrase ("small left effusion" -> "left pleural pleural
    effusion"), oracle the phrase as written: in one run they are still the same phrase, not a mismatch."""
    annotations, images = ms_cxr
    run = tmp_path / "bench"
    assert run_cli("bench", "--models", "oracle,prior", "--dataset", "ms-cxr", "--annotations",
                   str(annotations), "--images", str(images), "--out", str(run), "--resamples", "100",
                   "--no-report") == 0
    rows = read_csv(run / "per_sample.csv")
    assert {r["prompt"] for r in rows if r["model"] == "prior"} != {r["prompt"] for r in rows
                                                                    if r["model"] == "oracle"}
    assert run_cli("study", "create", "--models", "prior,oracle", "--runs", str(run), "--out",
                   str(tmp_path / "study")) == 0
    assert "phrase differs" not in capsys.readouterr().err


def test_draw_is_seeded_stratified_and_spread_over_locations(ms_cxr, tmp_path):
    from cxrg.study.create import spread_draw

    study, runs = build_study(ms_cxr, tmp_path, per_class=2, seed=5)
    con = connect(study)
    rows = con.execute("SELECT category, location, sample_id FROM cases ORDER BY id").fetchall()
    counts: dict[str, list[str]] = {}
    for row in rows:
        counts.setdefault(row["category"], []).append(row["location"])
    assert {k: len(v) for k, v in counts.items()} == {"Edema": 1, "Pleural Effusion": 2, "Pneumonia": 2,
                                                      "Pneumothorax": 2}
    assert all(len(set(v)) == len(v) for v in counts.values())  # two different locations per class
    again = tmp_path / "again"
    assert run_cli("study", "create", "--runs", str(runs[0]), "--runs", str(runs[1]), "--models",
                   "oracle,prior", "--per-class", "2", "--seed", "5", "--out", str(again)) == 0
    assert [r["sample_id"] for r in connect(again).execute("SELECT sample_id FROM cases ORDER BY id")] == \
        [r["sample_id"] for r in rows]

    groups = {"left": [f"l{k}" for k in range(6)], "right": ["r0"], "bibasilar": ["b0"]}
    drawn = spread_draw(groups, 3, np.random.default_rng(0))
    assert sorted(d[0] for d in drawn) == ["b", "l", "r"]  # one of each location before a second
    assert sorted(spread_draw(groups, 20, np.random.default_rng(0))) == sorted(sum(groups.values(), []))


def test_create_refuses_bad_input_in_one_line(ms_cxr, tmp_path, capsys):
    study, runs = build_study(ms_cxr, tmp_path)
    capsys.readouterr()
    cases = [
        (["--runs", str(runs[0]), "--models", "oracle,ldm", "--out", str(tmp_path / "x")],
         "model 'ldm' is in none of the runs; models in the runs: oracle"),
        (["--runs", str(runs[0]), "--models", "oracle", "--out", str(study)], "exists and is not empty"),
        (["--runs", str(tmp_path / "nope"), "--models", "oracle", "--out", str(tmp_path / "y")],
         "is not a bench run folder (no config.json)"),
        (["--models", "oracle", "--out", str(tmp_path / "z")], "no bench run given"),
    ]
    for args, message in cases:
        assert run_cli("study", "create", *args) != 0
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert run_cli("study", "analyse", str(tmp_path / "nope")) == 2
    assert "study folder not found" in capsys.readouterr().err
    assert run_cli("study", "serve", str(runs[0])) == 1
    assert "is not a study folder (no study.sqlite)" in capsys.readouterr().err
    assert run_cli("study", "analyse", str(study)) == 2
    assert "the study has no ratings yet" in capsys.readouterr().err


# --- database -------------------------------------------------------------------------------------------
def test_ratings_keep_their_history_and_export(study, tmp_path):
    from cxrg.study import db

    con = db.open_study(study)
    ada = db.get_or_add_rater(con, "  Ada   Lovelace ")
    assert ada["name"] == "Ada Lovelace"
    assert db.get_or_add_rater(con, "Ada Lovelace")["id"] == ada["id"]
    order = db.rater_items(ada)
    assert sorted(order) == list(range(1, 2 * PAIRS + 1))
    assert order == db.rater_order(0, "Ada Lovelace", sorted(order))  # seeded by (study seed, name)
    assert db.rater_items(db.get_or_add_rater(con, "Bob")) != order
    db.add_rating(con, ada["id"], order[0], 2, next_position=1)
    db.add_rating(con, ada["id"], order[1], 5, next_position=2)
    db.add_rating(con, ada["id"], order[0], 4)  # changed
    assert db.current_scores(con, ada["id"]) == {order[0]: 4, order[1]: 5}
    assert con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 3
    assert con.execute("SELECT position FROM raters WHERE id = ?", (ada["id"],)).fetchone()[0] == 2
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO ratings (rater_id, item_id, score, at) VALUES (?, ?, 6, 'now')",
                    (ada["id"], order[2]))
    for bad in ("", "   ", "x" * 81, "bell\x07"):
        with pytest.raises(Exception, match="rater name"):
            db.get_or_add_rater(con, bad)
    con.close()

    assert run_cli("study", "export", str(study)) == 0
    rows = read_csv(study / "ratings.csv")
    assert {(r["rater"], int(r["item_id"]), r["score"], r["times_rated"]) for r in rows} == {
        ("Ada Lovelace", order[0], "4", "2"), ("Ada Lovelace", order[1], "5", "1")}
    assert run_cli("study", "export", str(study), "--history", "--out", str(tmp_path / "h.csv")) == 0
    assert [r["score"] for r in read_csv(tmp_path / "h.csv")] == ["2", "5", "4"]


# --- statistics ---------------------------------------------------------------------------------------
def test_weighted_kappa_against_a_hand_worked_value():
    from cxrg.study.stats import kappa_with_ci, weighted_kappa

    # A: 1 2 3 4 5; B: 1 2 3 5 5. Quadratic weights w = (i - j)^2 (any scale cancels).
    # observed: one disagreement (4, 5), w = 1, proportion 1/5 -> sum w*O = 1/5.
    # expected: A is uniform (1/5 each); B is 1/5 at 1, 2, 3 and 2/5 at 5. For B = j, sum_i (i - j)^2 / 5
    # is 30/5, 15/5, 10/5 for j = 1, 2, 3 and 30/5 for j = 5, so sum w*E = (6 + 3 + 2 + 2 * 6) / 5 = 23/5.
    # kappa = 1 - (1/5) / (23/5) = 22/23.
    assert weighted_kappa([1, 2, 3, 4, 5], [1, 2, 3, 5, 5]) == pytest.approx(22 / 23)
    assert weighted_kappa([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    result = kappa_with_ci([1, 2, 3, 4, 5] * 4, [1, 2, 3, 5, 5] * 4, resamples=500, seed=1)
    assert result.value == pytest.approx(22 / 23) and result.n == 20
    assert result.low <= result.value <= result.high <= 1.0


def test_krippendorff_alpha_on_the_published_example():
    from cxrg.study.stats import krippendorff_alpha

    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing data;
    # published alpha: nominal 0.743, ordinal 0.815, interval 0.849.
    n = None
    observers = [[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                 [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]]
    units = list(zip(*observers, strict=True))
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def rate_all(study: Path, scores_by_rater: dict[str, dict[int, int]]) -> None:
    from cxrg.study import db

    con = db.open_study(study)
    for name, scores in scores_by_rater.items():
        rater = db.get_or_add_rater(con, name)
        for item, score in scores.items():
            db.add_rating(con, rater["id"], item, score)
    con.close()


def test_analyse_gives_scipy_spearman_and_the_hand_worked_kappa(study, capsys):
    from scipy.stats import spearmanr

    con = connect(study)
    items = {r["id"]: dict(r) for r in con.execute(
        "SELECT i.id, i.case_id, i.cnr, i.miou, m.name FROM items i JOIN models m ON m.id = i.model_id")}
    # R1 scores item k as 1 + (k - 1) % 5 (each score 4 times); R2 agrees except 4 -> 5: kappa = 22/23.
    r1 = {k: 1 + (k - 1) % 5 for k in items}
    r2 = {k: 5 if s == 4 else s for k, s in r1.items()}
    rate_all(study, {"R1": r1, "R2": r2})
    assert run_cli("study", "analyse", str(study), "--resamples", "200") == 0
    out = capsys.readouterr().out
    assert "## Spearman correlation of score with CNR and mIoU" in out
    assert "## Paired: delta = oracle − prior" in out
    summary = json.loads((study / "analysis" / "summary.json").read_text())
    for rater, scores in (("R1", r1), ("R2", r2)):
        for model in MODELS:
            mine = sorted(k for k in scores if items[k]["name"] == model)
            for metric in ("cnr", "miou"):
                expected = spearmanr([items[k][metric] for k in mine], [scores[k] for k in mine])
                got = summary["correlations"][rater][model][metric]
                assert got["rho"] == pytest.approx(expected.statistic, abs=1e-12)
                assert got["p"] == pytest.approx(expected.pvalue, abs=1e-12)
                assert got["n"] == PAIRS
            values = np.array([scores[k] for k in mine], dtype=float)
            assert summary["scores"][rater][model]["mean"] == pytest.approx(values.mean())
            assert summary["scores"][rater][model]["sd"] == pytest.approx(values.std(ddof=1))
    # paired: per case, delta = oracle - prior of CNR against delta of R1's score
    by_case: dict[int, dict[str, int]] = {}
    for k, item in items.items():
        by_case.setdefault(item["case_id"], {})[item["name"]] = k
    cases = sorted(by_case)
    d_cnr = [items[by_case[c]["oracle"]]["cnr"] - items[by_case[c]["prior"]]["cnr"] for c in cases]
    d_score = [r1[by_case[c]["oracle"]] - r1[by_case[c]["prior"]] for c in cases]
    expected = spearmanr(d_cnr, d_score)
    assert summary["paired"]["R1"]["cnr"]["rho"] == pytest.approx(expected.statistic, abs=1e-12)
    assert summary["paired"]["R1"]["n"] == PAIRS
    kappa = summary["agreement"]["kappa"]["R1 vs R2"]
    assert kappa["value"] == pytest.approx(22 / 23) and kappa["n"] == 2 * PAIRS
    assert kappa["low"] <= kappa["value"] <= kappa["high"]
    assert summary["agreement"]["alpha"]["n"] == 2 * PAIRS
    png = study / "analysis" / "results.png"
    assert png.stat().st_size > 10_000 and Image.open(png).size[0] > 800
    assert len(read_csv(study / "analysis" / "ratings.csv")) == 4 * PAIRS
    assert run_cli("study", "analyse", str(study), "--pair", "oracle,ldm") == 2


# --- server ---------------------------------------------------------------------------------------------
def test_server_reads_nothing_outside_the_media_folder(server, study):
    port = server.port
    item = connect(study).execute("SELECT heatmap_file FROM items LIMIT 1").fetchone()[0]
    status, body = request(port, "GET", "/" + item)
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    (study.parent / "secret.png").write_bytes(b"\x89PNG secret")
    (study / "media" / "link.png").symlink_to(study.parent / "secret.png")
    for path in ["/media/../study.sqlite", "/media/%2e%2e/study.sqlite", "/media/..%2fstudy.sqlite",
                 "/media/images/../../study.sqlite", "/media/%2e%2e%2f%2e%2e%2fsecret.png",
                 "/media//etc/passwd", "/media/%2fetc%2fpasswd", "/media/..%5c..%5csecret.png",
                 "/media/link.png", "/media/images/%00.png", "/../study.sqlite", "/study.sqlite",
                 "/media/", "/media/images", "/etc/passwd", "//etc/passwd"]:
        status, body = request(port, "GET", path)
        assert status == 404, path
        assert b"secret" not in (body if isinstance(body, bytes) else json.dumps(body).encode())


def test_server_escapes_names_and_refuses_foreign_requests(server, study):
    port = server.port
    name = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
    status, session = request(port, "POST", "/api/session", {"name": name})
    assert status == 200 and session["name"] == name and session["total"] == 2 * PAIRS
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/api/session", body=json.dumps({"name": name}),
                 headers={"Content-Type": "application/json"})
    raw = conn.getresponse().read()
    assert b"<" not in raw and b">" not in raw and b"\\u003cscript\\u003e" in raw
    status, page_html = request(port, "GET", "/")
    assert status == 200 and b"onerror" not in page_html and b"alert(" not in page_html
    from cxrg.study.page import APP_JS

    assert "innerHTML" not in APP_JS and "textContent" in APP_JS
    status, item = request(port, "GET", "/api/item?name=" + __import__("urllib.parse").parse.quote(name)
                           + "&position=0")
    assert status == 200
    assert not {"model", "cnr", "miou", "boxes"} & set(item)
    assert not any(model in json.dumps(item) for model in MODELS)
    status, _ = request(port, "GET", "/api/study", headers={"Host": "evil.example:80"})
    assert status == 403  # DNS rebinding
    conn = http.client.HTTPConnection("127.0.0.1", port)
    conn.request("POST", "/api/rate", body="name=x&position=0&score=5",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert conn.getresponse().status == 415  # no cross-site form posts
    status, answer = request(port, "POST", "/api/rate", {"name": name, "position": 0, "score": 9})
    assert status == 400 and "1-5" in answer["error"]
    status, answer = request(port, "POST", "/api/rate", {"name": "nobody", "position": 0, "score": 3})
    assert status == 404
    status, answer = request(port, "POST", "/api/rate", {"name": name, "position": 2 * PAIRS, "score": 3})
    assert status == 400
    headers = http.client.HTTPConnection("127.0.0.1", port)
    headers.request("GET", "/")
    response = headers.getresponse()
    assert "script-src 'self'" in response.getheader("Content-Security-Policy")
    assert connect(study).execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 0


def test_killed_server_loses_no_committed_rating(study):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cxrg", "study", "serve", str(study), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, session = request(port, "POST", "/api/session", {"name": "R1"})
        assert status == 200
        for position, score in enumerate([3, 4, 1, 5, 2, 2, 4]):
            status, answer = request(port, "POST", "/api/rate", {"name": "R1", "position": position,
                                                                 "score": score})
            assert status == 200 and answer["position"] == position + 1
        status, _ = request(port, "POST", "/api/rate", {"name": "R1", "position": 0, "score": 5})  # change
        assert status == 200
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    con = connect(study)
    history = con.execute("SELECT score FROM ratings ORDER BY id").fetchall()
    assert [r[0] for r in history] == [3, 4, 1, 5, 2, 2, 4, 5]
    assert con.execute("SELECT COUNT(*) FROM current_ratings").fetchone()[0] == 7
    assert con.execute("SELECT position FROM raters WHERE name = 'R1'").fetchone()[0] == 1
