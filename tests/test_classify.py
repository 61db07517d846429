"""`cxrg classify` on a tiny random LDM: v -> eps against MONAI, the draws, batched errors, eq. 8, the heatmap
strategies, the input readers, and the command end to end on a small cohort made here."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cxrg_test_support import read_csv, run_cli
from PIL import Image
from sklearn.metrics import roc_auc_score

from cxrg.classify import heatmaps
from cxrg.classify.data import (
    read_mimic_no_finding,
    read_negatives_csv,
    read_positives,
    subsample,
)
from cxrg.classify.diffusion import (
    DrawSettings,
    draw_noise,
    error_maps,
    noisy,
    to_eps,
    to_latent,
    weighted_error,
)
from cxrg.classify.heatmaps import HeatmapSource
from cxrg.errors import UsageError
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.ddim import to_x0_and_eps
from cxrg.ldm.heatmap import LdmEngine
from cxrg.ldm.loading import build_unet, load_ldm, load_state, read_checkpoint
from cxrg.ldm.text import Codebook, encode, tokenize
from cxrg.ldm.tiny import TINY, write_tiny
from cxrg.ldm.weights import WeightPaths

SMALL = HeatmapSettings(inference_steps=10, capture_steps=(3, 4))
CLASSES = ["No acute cardiopulmonary process", "pneumothorax"]
NEGATIVE_PROMPTS = ["left apical pneumothorax", "right apical pneumothorax", "left pneumothorax",
                    "right pneumothorax"]


@pytest.fixture(scope="module", autouse=True)
def no_denormals():
    """As `cxrg classify` does on CPU: denormal floats made the tiny U-Net up to 200x slower."""
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny LDM with its zero-initialised layers (MONAI's zero_module: output conv, proj_out, ...) made
    random, so that the U-Net's output depends on the prompt (with write_tiny's weights it is always 0)."""
    folder = write_tiny(tmp_path_factory.mktemp("weights"), seed=0)
    paths = WeightPaths(folder)
    unet = build_unet(TINY)
    load_state(unet, read_checkpoint(paths.unet), paths.unet)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if not param.any() and "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    torch.save(unet.state_dict(), paths.unet)
    return folder


@pytest.fixture(scope="module")
def ldm(tiny):
    return load_ldm(tiny)


@pytest.fixture(scope="module")
def tuned_file(tiny, ldm, tmp_path_factory) -> Path:
    codebook = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)
    with torch.no_grad():
        codebook.rows[codebook.anatomy] += torch.randn(int(codebook.anatomy.sum()), codebook.rows.shape[1],
                                                       generator=torch.Generator().manual_seed(2))
    folder = tmp_path_factory.mktemp("tuned")
    path = folder / "tuned.safetensors"  # tuned on the window of the small test settings
    codebook.save(path, {"text_encoder": ldm.fingerprint, "window": json.dumps(SMALL.window())})
    paper = HeatmapSettings(timestep_spacing="trailing")  # the paper protocol's grid (cxrg/protocol.py)
    codebook.save(folder / "paper.safetensors", {"text_encoder": ldm.fingerprint,
                                                 "window": json.dumps(paper.window())})
    return path


def contexts(ldm, prompts=CLASSES):
    ids, _ = tokenize(ldm.tokenizer, prompts)
    with torch.inference_mode():
        return encode(ldm.text_encoder, ids)


# ------------------------------------------------------------------------------------ v -> eps


def monai_ddim():
    from monai.networks.schedulers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                         beta_end=0.0205, prediction_type="v_prediction", clip_sample=False)


def test_v_to_eps_is_monai_definition_per_sample():
    scheduler = monai_ddim()
    alphas = scheduler.alphas_cumprod.double()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 17, 300, 640, 999])
    x_t = scheduler.add_noise(x0, eps, t)
    v = scheduler.get_velocity(x0, eps, t)  # the v-prediction target MONAI trains with
    torch.testing.assert_close(noisy(x0, eps, alphas[t]), x_t)
    torch.testing.assert_close(to_eps(x_t, v, alphas[t], "v_prediction"), eps)  # exact v -> eps
    output = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)  # any model output
    for kind in ("v_prediction", "epsilon", "sample"):
        ours = to_eps(x_t, output, alphas[t], kind)
        for i in range(5):
            torch.testing.assert_close(ours[i], to_x0_and_eps(x_t[i], output[i], alphas[t[i]], kind)[1])


def test_v_to_eps_matches_the_ddim_step():
    """MONAI's DDIM step (eta 0) gives x0_hat and sqrt(a') x0_hat + sqrt(1 - a') eps_hat: solve for it."""
    scheduler = monai_ddim()
    scheduler.set_timesteps(50)
    scheduler.alphas_cumprod = scheduler.alphas_cumprod.double()  # MONAI keeps float32; compare in float64
    alphas = scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(1)
    for t in (980, 500, 40):
        sample = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
        output = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
        previous, x0_hat = scheduler.step(output, t, sample)
        a_prev = alphas[t - 1000 // 50]
        eps_monai = (previous - a_prev.sqrt() * x0_hat) / (1 - a_prev).sqrt()
        torch.testing.assert_close(to_eps(sample, output, alphas[[t, t]], "v_prediction"), eps_monai)


# ------------------------------------------------------------------------------------ draws and errors


def test_draws_are_seeded_per_image_and_stratified():
    settings = DrawSettings(draws=10, t_min=100, t_max=599)
    t, eps = draw_noise(0, "img-1", settings, (3, 4, 4))
    t2, eps2 = draw_noise(0, "img-1", settings, (3, 4, 4))
    assert np.array_equal(t, t2) and np.array_equal(eps, eps2) and eps.dtype == np.float32
    assert eps.shape == (10, 3, 4, 4)
    assert all(100 + 50 * k <= t[k] < 150 + 50 * k for k in range(10))  # one t per stratum of 50
    t3, eps3 = draw_noise(0, "img-2", settings, (3, 4, 4))
    assert not np.array_equal(eps, eps3)
    t4, _ = draw_noise(1, "img-1", settings, (3, 4, 4))
    assert not np.array_equal(t, t4)
    single, _ = draw_noise(0, "x", DrawSettings(draws=3, t_min=7, t_max=7), (1,))
    assert single.tolist() == [7, 7, 7]
    with pytest.raises(UsageError):
        DrawSettings(draws=2, t_min=10, t_max=1000).check(1000)


def test_error_maps_batched_equal_one_at_a_time_and_the_hand_formula(ldm):
    engine = LdmEngine(ldm, SMALL)
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    ctx = contexts(ldm)
    with torch.inference_mode():
        latent = engine.encode_image(engine.model_input(image))
    t, eps = draw_noise(0, "a", DrawSettings(draws=5), tuple(latent.shape[1:]))
    args = (ldm.unet, latent, ctx, t, eps, ldm.alphas, "v_prediction")
    with torch.inference_mode():
        one = error_maps(*args, batch_size=1)
        batched = error_maps(*args, batch_size=4)
        everything = error_maps(*args, batch_size=64)
    assert one.shape == (2, 16, 16)
    np.testing.assert_allclose(batched, one, rtol=1e-5)
    np.testing.assert_allclose(everything, one, rtol=1e-5)
    assert np.abs(one[0] - one[1]).max() > 1e-4  # the class prompt matters
    # by hand, in float64, draw by draw
    expected = np.zeros((2, 16, 16))
    x0 = latent.double()
    for d in range(5):
        a = ldm.alphas[t[d]]
        e = torch.from_numpy(eps[d]).double()[None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * e
        for k in range(2):
            with torch.inference_mode():
                v = ldm.unet(x_t.float(), timesteps=torch.tensor([int(t[d])]), context=ctx[k:k + 1]).double()
            eps_hat = a.sqrt() * v + (1 - a).sqrt() * x_t
            expected[k] += ((e - eps_hat) ** 2).sum(dim=1)[0].numpy() / 5
    np.testing.assert_allclose(one, expected, rtol=1e-4)


def test_weighted_error_is_eq8_by_hand():
    maps = np.array([[[1.0, 2.0], [3.0, 4.0]], [[4.0, 0.0], [0.0, 0.0]]])
    weights = np.array([[1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(weighted_error(maps, weights), [(1 + 12) / 4, 4 / 4])
    np.testing.assert_allclose(weighted_error(maps, None), [2.5, 1.0])
    np.testing.assert_allclose(weighted_error(maps, np.zeros((2, 2))), [2.5, 1.0])  # empty map: plain mean


def test_heatmap_to_latent_is_an_area_average():
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(to_latent(heat, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])
    big = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    small = to_latent(big, (16, 16))
    assert small.shape == (16, 16)
    np.testing.assert_allclose(small.mean(), big.mean(), rtol=1e-6)
    np.testing.assert_allclose(small[3, 5], big[12:16, 20:24].mean(), rtol=1e-6)


def test_heatmap_strategies(ldm):
    engine = LdmEngine(ldm, SMALL)
    identity = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)  # untrained rows: the frozen encoder
    source = HeatmapSource(engine, "pneumothorax", identity)
    image = np.random.default_rng(1).random((64, 80)).astype(np.float32)
    pixels = engine.model_input(image)
    prompts = ["left apical pneumothorax", "right pneumothorax", "left apical pneumothorax"]
    maps = source.maps(pixels, prompts, heatmaps.STRATEGIES)
    assert maps["none"] == [None, None, None]
    assert all(m is maps["fixed"][0] for m in maps["fixed"])
    frozen = LdmEngine(ldm, SMALL.with_changes(otsu=True)).maps(image, prompts)
    for ours, theirs in zip(maps["location"], frozen, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(maps["fixed"][0], LdmEngine(ldm, SMALL).maps(image, ["pneumothorax"])[0],
                               atol=1e-6)
    raw = LdmEngine(ldm, SMALL.with_changes(otsu=False)).maps(image, prompts)
    for ours, theirs in zip(maps["tuned"], raw, strict=True):  # identity codebook, no Otsu
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert not np.allclose(maps["location"][0], maps["location"][1])
    with pytest.raises(UsageError):
        heatmaps.parse_strategies("none,bogus")
    assert heatmaps.parse_strategies("tuned, none") == ["none", "tuned"]


# ------------------------------------------------------------------------------------ inputs


MS_CXR_HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                 "image_height"]
# (dicom_id, category, phrase, box xywh): three pneumothorax images (one with two phrases), one other class,
# one phrase that is not a vocabulary prompt
POSITIVES = [
    ("p1", "Pneumothorax", "left apical pneumothorax", (60, 5, 30, 30)),
    ("p2", "Pneumothorax", "right pneumothorax", (5, 10, 40, 60)),
    ("p3", "Pneumothorax", "right apical pneumothorax", (10, 5, 30, 25)),
    ("p3", "Pneumothorax", "left pneumothorax", (55, 10, 35, 60)),
    ("p4", "Pleural Effusion", "left pleural effusion", (60, 60, 30, 30)),
    ("p5", "Pneumothorax", "small apical pneumothorax", (10, 5, 30, 25)),
    ("p6", "Pneumothorax", "bilateral apical pneumothorax", (10, 5, 80, 25)),
]


def write_cohort(root: Path) -> tuple[Path, Path, Path, Path]:
    images = root / "images"
    rows = []
    for k, (dicom, category, phrase, (x, y, w, h)) in enumerate(POSITIVES):
        path = images / f"files/p10/p10000001/s1/{dicom}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            Image.fromarray(np.random.default_rng(k).integers(0, 255, (90, 100), dtype=np.uint8)).save(path)
        rows.append([dicom, category, phrase, str(path.relative_to(images)), x, y, w, h, 100, 90])
    positives = root / "ms_cxr_loc.csv"
    with positives.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MS_CXR_HEADER)
        writer.writerows(rows)
    healthy = root / "healthy"
    healthy.mkdir()
    for k in range(3):
        Image.fromarray(np.random.default_rng(50 + k).integers(0, 255, (80, 96), dtype=np.uint8)).save(
            healthy / f"n{k}.png")
    (healthy / "broken.png").write_bytes(b"not a png")
    negatives = root / "healthy.csv"
    negatives.write_text("image,image_id\nn0.png,n0\nn1.png,n1\nn2.png,n2\nbroken.png,broken\n")
    return positives, images, negatives, healthy


def test_positives_are_the_pathology_samples_grouped_by_image(tmp_path):
    positives, images, _, _ = write_cohort(tmp_path)
    jobs, notes = read_positives(positives, "ms-cxr", images, "Pneumothorax")
    assert [j.key for j in jobs] == ["p1", "p2", "p3", "p5", "p6"]
    assert [r.unit for r in jobs[2].runs] == ["p3:0", "p3:1"]  # one image, two phrases: one job, two runs
    assert jobs[2].runs[1].prompt == "left pneumothorax"
    assert jobs[2].runs[1].boxes.tolist() == [[55, 10, 90, 70]]
    assert "not a '<location> pneumothorax' prompt" in jobs[3].error
    assert "cxrg curate --ms-cxr" in jobs[3].error
    assert not jobs[4].error and jobs[4].runs[0].prompt == "bilateral apical pneumothorax"
    assert notes == ["positives: 1 sample(s) of class 'Pleural Effusion' left out (not Pneumothorax)"]


def test_negatives_from_a_csv_and_from_mimic_no_finding(tmp_path):
    _, _, negatives, healthy = write_cohort(tmp_path)
    jobs = read_negatives_csv(negatives, healthy, NEGATIVE_PROMPTS)
    assert [j.key for j in jobs] == ["n0", "n1", "n2", "broken"]
    assert [r.prompt for r in jobs[0].runs] == NEGATIVE_PROMPTS and all(r.label == 0 for r in jobs[0].runs)
    bad = tmp_path / "bad.csv"
    bad.write_text("image\n../escape.png\nn0.png\nn0.png\n")
    errors = [j.error for j in read_negatives_csv(bad, healthy, NEGATIVE_PROMPTS)]
    assert "escapes" in errors[0] and errors[1] == "" and "repeats row 3" in errors[2]

    labels = tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
    labels.write_text("subject_id,study_id,Atelectasis,No Finding,Pneumothorax\n"
                      "10000032,50414267,,1.0,\n10000032,53189527,1.0,,\n10000898,50771383,,-1.0,\n"
                      "10001234,51111111,,1.0,0.0\n")
    metadata = tmp_path / "mimic-cxr-2.0.0-metadata.csv"
    metadata.write_text("dicom_id,subject_id,study_id,ViewPosition\n"
                        "d1,10000032,50414267,PA\nd2,10000032,50414267,LATERAL\nd3,10000032,53189527,PA\n"
                        "d4,10000898,50771383,AP\nd5,10001234,51111111,AP\n")
    jobs, notes = read_mimic_no_finding(labels, metadata, tmp_path, NEGATIVE_PROMPTS)
    assert [j.key for j in jobs] == ["d1", "d5"]
    assert jobs[0].image_path == (tmp_path / "files/p10/p10000032/s50414267/d1.jpg").resolve()
    assert notes == ["negatives: 2 'No Finding' studies, 2 AP/PA image(s), 1 image(s) of other views "
                     "left out, no split file: every split used"]
    split = tmp_path / "mimic-cxr-2.0.0-split.csv"
    split.write_text("dicom_id,study_id,subject_id,split\nd1,50414267,10000032,train\n"
                     "d5,51111111,10001234,test\n")
    jobs, notes = read_mimic_no_finding(labels, metadata, tmp_path, NEGATIVE_PROMPTS, split_file=split)
    assert [j.key for j in jobs] == ["d5"]  # the official test split only (paper, Appendix K)
    assert notes[0].endswith("2 image(s) outside the test split left out")  # d1, and d2 (lateral)
    assert [j.key for j in subsample(jobs * 3, 2, seed=0)] == [j.key for j in subsample(jobs * 3, 2, seed=0)]
    assert len(subsample(jobs * 3, 2, seed=0)) == 2 and subsample(jobs, None, 0) == jobs


def test_eq8_per_class_weighting_differs_from_shared_by_hand():
    from cxrg.classify.diffusion import class_weighted_error, weighted_error

    maps = np.array([[[4.0, 0.0], [0.0, 0.0]],    # healthy prompt's error: top-left
                     [[0.0, 0.0], [0.0, 4.0]]])   # pathology prompt's error: bottom-right
    pathology_map = np.array([[0.0, 0.0], [0.0, 1.0]])
    healthy_map = np.ones((2, 2))
    shared = weighted_error(maps, pathology_map)  # one map for both: healthy 0, pathology 4
    per_class = class_weighted_error(maps, [healthy_map, pathology_map])  # healthy mean 1, pathology 4
    assert shared.tolist() == [0.0, 4.0] and per_class.tolist() == [1.0, 4.0]
    assert shared[0] - shared[1] == -4.0 and per_class[0] - per_class[1] == -3.0


# ------------------------------------------------------------------------------------ the command


def classify(*args: str) -> int:
    return run_cli("classify", *args)




def test_classify_end_to_end(tiny, tuned_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(heatmaps, "HEATMAP_SETTINGS", SMALL)  # fewer inversion steps: a faster test
    positives, images, negatives, healthy = write_cohort(tmp_path)
    out = tmp_path / "run"
    args = ("--positives", str(positives), "--images", str(images), "--negatives", str(negatives),
            "--negatives-images", str(healthy), "--weights", str(tiny), "--embeddings", str(tuned_file),
            "--out", str(out), "--draws", "4", "--resamples", "500", "--batch-size", "5",
            "--protocol", "cxrg")  # the embeddings were tuned on the leading grid (cxrg's)
    assert classify(*args) == 0
    captured = capsys.readouterr()
    assert "## AUROC per heatmap strategy" in captured.out and f"results in {out}" in captured.err
    # 5 positive and 3 negative samples: the statistics are flagged, on stderr and in results.md
    warning = "only 5 positive and 3 negative samples: with fewer than 10 of either"
    assert f"cxrg: warning: {warning}" in captured.err
    assert captured.out.startswith(f"**Warning: {warning}")

    rows = read_csv(out / "scores.csv")
    strategies = ["none", "fixed", "location", "tuned"]
    # 5 positive runs (p1, p2, p3 x2, p6) + 1 failed (p5); 3 negatives x 4 prompts + 1 broken x 4
    assert len(rows) == (6 + 4 * 4) * 4
    scored = [r for r in rows if not r["error"]]
    assert len(scored) == (5 + 3 * 4) * 4
    for r in scored:
        assert float(r["score"]) == pytest.approx(float(r["error_healthy"]) - float(r["error_pathology"]))
        assert (r["miou"] != "") == (r["kind"] == "positive" and r["strategy"] != "none")
    n0 = {(r["prompt"], r["strategy"]): float(r["score"]) for r in scored if r["unit"] == "n0"}
    assert len({n0[(p, "none")] for p in NEGATIVE_PROMPTS}) == 1  # no heatmap: the same for every prompt
    assert len({n0[(p, "fixed")] for p in NEGATIVE_PROMPTS}) == 1
    assert len({n0[(p, "location")] for p in NEGATIVE_PROMPTS}) == 4  # each location weights differently
    p3 = {(r["unit"], r["strategy"]): r for r in scored if r["unit"].startswith("p3")}
    assert p3[("p3:0", "none")]["score"] == p3[("p3:1", "none")]["score"]  # one image: the same draws

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["positive"] == {"images": 5, "images_failed": 1, "runs": 6, "runs_scored": 5,
                                             "runs_failed": 1, "units_scored": 5}
    assert summary["counts"]["negative"] == {"images": 4, "images_failed": 1, "runs": 16, "runs_scored": 12,
                                             "runs_failed": 4, "units_scored": 3}
    auroc = {r["strategy"]: r for r in read_csv(out / "auroc.csv")}
    for s in strategies:
        mine = [r for r in scored if r["strategy"] == s]
        expected = roc_auc_score([int(r["label"]) for r in mine], [float(r["score"]) for r in mine])
        assert float(auroc[s]["value"]) == pytest.approx(expected, abs=1e-12)
        assert float(auroc[s]["ci_low"]) <= float(auroc[s]["value"]) <= float(auroc[s]["ci_high"])
    assert auroc["tuned"]["diff_vs"] == "none" and auroc["none"]["diff_vs"] == ""

    bins = read_csv(out / "bins.csv")
    assert [(b["binned_by"], b["scored_by"]) for b in bins] == [
        (s, scorer) for s in strategies[1:] for scorer in (s, "none")]
    negative_scores = {s: [float(r["score"]) for r in scored
                           if r["kind"] == "negative" and r["strategy"] == s] for s in strategies}
    for b in bins:
        mine = [r for r in scored if r["kind"] == "positive" and r["strategy"] == b["binned_by"]]
        order = sorted(range(5), key=lambda i: float(mine[i]["miou"]))  # stable: ties in file order
        low_units = {mine[i]["unit"] for i in order[:2]}
        low_scores = [float(r["score"]) for r in scored
                      if r["strategy"] == b["scored_by"] and r["unit"] in low_units]
        neg = negative_scores[b["scored_by"]]
        expected = roc_auc_score([1] * 2 + [0] * len(neg), low_scores + neg)
        assert b["per_bin"] == "2" and b["left_out"] == "1"
        assert float(b["low"]) == pytest.approx(expected, abs=1e-12)
    assert (out / "results.png").stat().st_size > 1000
    assert "| tuned |" in (out / "results.md").read_text()

    # resume: finished rows are kept, failed images tried again
    rows[0]["score"] = "123.0"
    with (out / "scores.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert classify(*args, "--limit", "2") == 0
    again = read_csv(out / "scores.csv")
    assert again[0]["score"] == "123.0" and len(again) == (2 + 2 * 4) * 4  # p1, p2; n0, n1
    assert "resuming: 4 of 4 images already classified" in (out / "log.txt").read_text()
    assert classify(*args, "--draws", "5") == 2  # other settings in the same folder are refused
    assert "different draws" in capsys.readouterr().err


def test_small_sample_warning_threshold():
    from cxrg.classify.report import small_sample

    assert small_sample(10, 10) is None
    assert small_sample(3, 3).startswith("only 3 positive and 3 negative samples")
    assert small_sample(40, 9) is not None


def test_classify_errors_are_one_line(tiny, tmp_path, capsys):
    positives, images, negatives, healthy = write_cohort(tmp_path)
    base = ("--positives", str(positives), "--images", str(images), "--weights", str(tiny),
            "--out", str(tmp_path / "run"))
    assert classify(*base) == 2
    assert capsys.readouterr().err == ("cxrg: error: give the negatives either as --negatives FILE or as "
                                       "--chexpert-labels FILE --metadata FILE\n")
    assert classify(*base, "--negatives", str(negatives), "--negatives-images", str(healthy),
                    "--strategies", "none,tuned") == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrg: error: the tuned strategy needs tuned embeddings") and err.count("\n") == 1
    assert classify(*base, "--negatives", str(negatives), "--negatives-images", str(healthy),
                    "--t-max", "1000") == 2
    assert "timestep range 0..1000" in capsys.readouterr().err
    assert classify(*base, "--negatives", str(negatives), "--negatives-images", str(healthy),
                    "--pathology", "Edema") == 2
    assert "no Edema sample among the positives" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written before the inputs are good


def test_classify_help_does_not_import_torch():
    probe = ("import sys\nfrom cxrg.cli.main import run\ntry:\n    run(['classify', '--help'])\n"
             "except SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ))
    assert "NO_TORCH" in result.stderr and "--positives" in result.stdout


def test_classify_with_the_paper_heatmap_settings(tiny, tuned_file, tmp_path):
    positives, images, negatives, healthy = write_cohort(tmp_path)
    out = tmp_path / "run"
    assert classify("--positives", str(positives), "--images", str(images), "--negatives", str(negatives),
                    "--negatives-images", str(healthy), "--weights", str(tiny), "--embeddings",
                    str(tuned_file.with_name("paper.safetensors")), "--out", str(out), "--draws", "8",
                    "--resamples", "1000",
                    "--limit", "2") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["strategy"] for r in summary["auroc"]] == ["none", "fixed", "location", "tuned"]
    assert summary["counts"]["negative"]["runs_scored"] == 8
