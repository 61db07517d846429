"""`--protocol paper|cxrg`: the table of choices, how a command resolves them, and, per choice, a case where
the two protocols give different results (cxrg/protocol.py, docs/decisions.md)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cxrg_test_support import read_csv, run_cli
from test_atlas_models import vindr  # noqa: F401  (the VinDr-format fixture)
from test_images import data_store_file, write_dicom

from cxrg.config import load_config
from cxrg.errors import UsageError
from cxrg.protocol import CHOICES, NAMES, resolve, table_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs" / "decisions.md"


# ------------------------------------------------------------------------------------------ the table


def test_every_choice_has_both_values_a_source_and_a_setting():
    assert len(NAMES) == len(set(NAMES)) == 13
    for choice in CHOICES:
        assert choice.paper in choice.values and choice.cxrg in choice.values
        assert choice.paper_says and choice.code_2024 and choice.setting and choice.commands


def test_decisions_md_holds_the_table():
    assert table_markdown() in DOCS.read_text(encoding="utf-8")


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paper = resolve("curate", cfg=load_config(warn=False))
    assert paper.protocol == "paper" and paper.protocol_source == "default"
    assert paper.values == {"extractor": "radgraph", "location_mappings": "list", "prompt_style": "paper",
                            "negation": "sentence"}
    (tmp_path / "cxrg.toml").write_text('protocol = "cxrg"\n[choices]\nnegation = "sentence"\n')
    cfg = load_config(warn=False)
    mixed = resolve("curate", {"extractor": "rules"}, cfg=cfg)
    assert mixed.protocol == "cxrg" and mixed.protocol_source.endswith("cxrg.toml")
    assert mixed.values == {"extractor": "rules", "location_mappings": "extended", "prompt_style": "cxrg",
                            "negation": "sentence"}
    assert mixed.sources["extractor"] == "command line" and mixed.sources["negation"].endswith("cxrg.toml")
    assert mixed.sources["location_mappings"] == "protocol cxrg"
    record = resolve("curate", protocol="paper", cfg=cfg).record()
    assert record["protocol"] == "paper" and record["protocol_source"] == "command line"
    assert record["choices"]["negation"] == {"value": "sentence", "source": str(tmp_path / "cxrg.toml")}
    with pytest.raises(UsageError, match="unknown protocol"):
        resolve("bench", protocol="papr")
    with pytest.raises(UsageError, match="--negation: 'both' is not one of sentence, mention"):
        resolve("curate", {"negation": "both"})


def test_commands_resolve_only_their_own_choices():
    assert set(resolve("classify").values) == {"prompt_style", "loc_pairs", "error", "negatives_split",
                                               "timestep_spacing", "dicom_display", "heatmap_upsampling"}
    assert set(resolve("tune").values) == {"g_normalisation", "timestep_spacing", "dicom_display"}


# ------------------------------------------------------------------------------ 1. the extractor


MS_CXR_HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width",
                 "image_height"]


def write_ms_cxr(path: Path, phrases: list[tuple[str, str, str]]) -> Path:
    """(dicom_id, category, phrase) rows with one box each."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MS_CXR_HEADER)
        for dicom_id, category, phrase in phrases:
            writer.writerow([dicom_id, category, phrase, f"files/p10/p10000001/s50000001/{dicom_id}.jpg",
                             10, 10, 40, 40, 100, 100])
    return path


PHRASES = [("d1", "Pneumonia", "Left lower lobe pneumonia"),
           ("d1", "Pneumonia", "pneumonia in the left lower lobe"),   # the same prompt on the same image
           ("d2", "Lung Opacity", "Retrocardiac opacity"),             # outside the paper's list
           ("d3", "Pneumothorax", "Small pneumothorax"),               # no location
           ("d4", "Pleural Effusion", "Small left pleural effusion")]


def test_curate_paper_needs_radgraph_xl_and_says_so(tmp_path, capsys):
    source = write_ms_cxr(tmp_path / "ms.csv", PHRASES)
    assert run_cli("curate", "--ms-cxr", str(source), "--out", str(tmp_path / "p"), "--radgraph-dir",
                   str(tmp_path / "none")) == 1
    err = capsys.readouterr().err
    assert "the paper protocol extracts locations with RadGraph-XL alone" in err and "Traceback" not in err
    assert err.count("\n") == 1 and "--protocol cxrg" in err


def test_extractor_help_says_what_auto_does(capsys):
    assert run_cli("curate", "--help") == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "auto (hybrid when the radgraph package and the RadGraph-XL weights are found, else rules" in text


def test_ms_cxr_loc_paper_list_drops_retrocardiac_with_its_reason_and_counts_add_up(tmp_path, capsys):
    source = write_ms_cxr(tmp_path / "ms.csv", PHRASES)
    outs = {}
    for protocol in ("paper", "cxrg"):
        out = tmp_path / protocol
        assert run_cli("curate", "--ms-cxr", str(source), "--out", str(out), "--protocol", protocol,
                       "--extractor", "rules") == 0
        outs[protocol] = (read_csv(out / "ms_loc.csv"), read_csv(out / "dropped.csv"),
                          json.loads((out / "config.json").read_text())["config"], capsys.readouterr().out)
    paper_rows, paper_dropped, paper_config, paper_out = outs["paper"]
    cxrg_rows, cxrg_dropped, cxrg_config, _ = outs["cxrg"]
    assert {r["label_text"] for r in cxrg_rows} == {"left lower pneumonia", "left lower lung opacity",
                                                    "left pleural pleural effusion"}
    assert "left lower lung opacity" not in {r["label_text"] for r in paper_rows}
    assert paper_config["choices"]["prompt_style"]["value"] == "paper"
    assert {r["label_text"]: r["reason"] for r in paper_dropped} == {
        "Retrocardiac opacity": "area outside the location list (retrocardiac)",
        "Small pneumothorax": "no location word"}
    assert len(paper_rows) + len(paper_dropped) == len(PHRASES) == len(cxrg_rows) + len(cxrg_dropped)
    assert paper_config["protocol"] == "paper" and cxrg_config["protocol"] == "cxrg"
    assert paper_config["choices"]["extractor"] == {"value": "rules", "source": "command line"}
    assert paper_config["choices"]["location_mappings"]["value"] == "list"
    assert "5 phrases = 3 kept + 2 dropped; 3 samples in `cxrg bench` (loc_pairs=phrase)" in paper_out
    assert "Pneumonia: N=2 (Table 1: N=146)" in paper_out and "Lung Opacity: N=0 (Table 1: N=78)" in paper_out


def test_ms_cxr_loc_with_a_tiny_radgraph_xl_end_to_end(tmp_path, capsys):
    pytest.importorskip("radgraph", reason="the optional radgraph package is not installed")
    from test_curation_radgraph import build_tiny_radgraph_xl

    model_dir = build_tiny_radgraph_xl(tmp_path / "rg")
    source = write_ms_cxr(tmp_path / "ms.csv", PHRASES)
    out = tmp_path / "paper"
    assert run_cli("curate", "--ms-cxr", str(source), "--out", str(out), "--radgraph-dir",
                   str(model_dir)) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["extractor"] == "radgraph" and config["choices"]["extractor"]["source"] == "protocol paper"
    kept, dropped = read_csv(out / "ms_loc.csv"), read_csv(out / "dropped.csv")
    assert len(kept) + len(dropped) == len(PHRASES)
    reasons = {r["label_text"]: r["reason"] for r in dropped}
    assert reasons["Small pneumothorax"].startswith("RadGraph-XL tagged no anatomy")
    assert "left pleural pleural effusion" in {r["label_text"] for r in kept}


# ------------------------------------------------------------------------------ 3. negation


def test_negation_sentence_level_versus_per_mention():
    from cxrg.curation.extractors import RulesExtractor
    from cxrg.curation.pipeline import curate_sentence

    rules = RulesExtractor()
    cases = {  # sentence: (pathology, paper verdict, cxrg verdict)
        "No change in the small left pleural effusion.": ("Pleural Effusion", "negated", "present"),
        "Small left effusion without pneumothorax.": ("Pleural Effusion", "negated", "present"),
        "Right pneumothorax has resolved; small left effusion.": ("Pleural Effusion", "resolved", "present"),
        "Left lower lobe pneumonia cannot be excluded.": ("Pneumonia", "present", "uncertain"),
        "No pneumothorax.": ("Pneumothorax", "negated", "negated"),
    }
    for sentence, (pathology, paper, ours) in cases.items():
        assert curate_sentence(sentence, pathology, rules, "sentence")[0] == paper, sentence
        assert curate_sentence(sentence, pathology, rules, "mention")[0] == ours, sentence
    assert curate_sentence("Left lower lobe pneumonia cannot be excluded.", "Pneumonia", rules,
                           "sentence") == ("present", ("left lower",))


def test_curate_reports_follow_the_protocol(tmp_path, capsys):
    reports = tmp_path / "reports.csv"
    reports.write_text("id,text,label\n"
                       "r1,No change in the small left pleural effusion.,Pleural Effusion\n"
                       "r2,Left lower lobe pneumonia cannot be excluded.,Pneumonia\n")
    counts = {}
    for protocol in ("paper", "cxrg"):
        out = tmp_path / protocol
        assert run_cli("curate", "--reports", str(reports), "--out", str(out), "--protocol", protocol,
                       "--extractor", "rules") == 0
        counts[protocol] = [r["prompt"] for r in read_csv(out / "manifest.csv")]
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["choices"]["negation"]["value"] == ("sentence" if protocol == "paper" else "mention")
    assert counts == {"paper": ["left lower pneumonia"], "cxrg": ["left pleural pleural effusion"]}


# ------------------------------------------------------------------------------ 4. MS-CXR-loc pairs


def test_loc_pairs_one_sample_per_phrase_or_merged(tmp_path):
    from cxrg.bench.datasets import read_ms_cxr

    source = write_ms_cxr(tmp_path / "ms.csv", PHRASES)
    assert run_cli("curate", "--ms-cxr", str(source), "--out", str(tmp_path / "loc"), "--protocol",
                   "cxrg") == 0
    loc = tmp_path / "loc" / "ms_loc.csv"
    (tmp_path / "images").mkdir()
    per_phrase = read_ms_cxr(loc, tmp_path / "images", pairs="phrase")
    merged = read_ms_cxr(loc, tmp_path / "images", pairs="merged")
    pneumonia = [s for s in per_phrase.samples if s.category == "Pneumonia"]
    assert [(s.prompt, len(s.boxes)) for s in pneumonia] == [("left lower pneumonia", 1)] * 2
    assert [(s.prompt, len(s.boxes)) for s in merged.samples if s.category == "Pneumonia"] == [
        ("left lower pneumonia", 2)]
    assert len(per_phrase.samples) == 4 and len(merged.samples) == 3
    with pytest.raises(UsageError, match="unknown loc_pairs"):
        read_ms_cxr(loc, tmp_path / "images", pairs="both")


# ------------------------------------------------------------------------------ 5. eq. 8's error


class _HalfUnet(torch.nn.Module):
    """eps_theta = x_t / 2 (an epsilon-predicting stand-in: the error is then known in closed form)."""

    def forward(self, sample, timesteps, context):  # noqa: ARG002
        return sample * 0.5 + context[:, :1, :1, None] * 0.0


def test_eq8_norm_is_the_norm_over_channels_not_its_square():
    from cxrg.classify.diffusion import error_maps

    rng = np.random.default_rng(0)
    latent = torch.tensor(rng.standard_normal((1, 3, 2, 2)), dtype=torch.float32)
    eps = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    timesteps = np.array([100, 700])
    alphas = torch.linspace(0.99, 0.01, 1000, dtype=torch.float64)
    contexts = torch.zeros((1, 77, 4))
    by_hand_sq, by_hand_norm = np.zeros((2, 2)), np.zeros((2, 2))
    for d, t in enumerate(timesteps):
        a = float(alphas[t])
        x_t = np.sqrt(a) * latent.numpy()[0] + np.sqrt(1 - a) * eps[d]
        diff = eps[d] - 0.5 * x_t
        by_hand_sq += (diff ** 2).sum(axis=0) / 2
        by_hand_norm += np.sqrt((diff ** 2).sum(axis=0)) / 2
    squared = error_maps(_HalfUnet(), latent, contexts, timesteps, eps, alphas, "epsilon", 4, "squared")
    norm = error_maps(_HalfUnet(), latent, contexts, timesteps, eps, alphas, "epsilon", 4, "norm")
    np.testing.assert_allclose(squared[0], by_hand_sq, rtol=1e-5)
    np.testing.assert_allclose(norm[0], by_hand_norm, rtol=1e-5)
    assert not np.allclose(norm[0], np.sqrt(squared[0]))  # averaged over draws: not the root of the mean
    assert resolve("classify")["error"] == "norm"
    assert resolve("classify", protocol="cxrg")["error"] == "squared"


# ------------------------------------------------------------------------------ 6. negatives


def _cohort(tmp_path: Path) -> list[str]:
    images = tmp_path / "images"
    images.mkdir()
    positives = write_ms_cxr(tmp_path / "loc.csv", [("d1", "Pneumothorax", "left pneumothorax")])
    (tmp_path / "chexpert.csv").write_text("subject_id,study_id,No Finding\n10000001,50000002,1.0\n")
    (tmp_path / "metadata.csv").write_text("dicom_id,subject_id,study_id,ViewPosition\n"
                                           "d1,10000001,50000001,AP\nn1,10000001,50000002,AP\n"
                                           "n2,10000001,50000002,PA\n")
    return ["--positives", str(positives), "--images", str(images), "--chexpert-labels",
            str(tmp_path / "chexpert.csv"), "--metadata", str(tmp_path / "metadata.csv"), "--weights",
            str(tmp_path / "no-weights"), "--out", str(tmp_path / "run")]


def test_paper_protocol_refuses_negatives_without_a_split_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = _cohort(tmp_path)
    assert run_cli("classify", *args) == 2
    assert "no split file given" in capsys.readouterr().err
    for more in (["--split", "any"], ["--protocol", "cxrg"]):  # both get past the negatives to the weights
        assert run_cli("classify", *args, *more) == 1
        err = capsys.readouterr().err
        assert "no split file given" not in err and "not found" in err


def test_negatives_views_follow_the_positives():
    from cxrg.classify.data import Job, subsample_matching

    jobs = [Job(f"{v}{k}", None, [], view=v) for v in ("PA", "AP", "LL") for k in range(10)]
    kept, note = subsample_matching(jobs, {"PA": 3, "AP": 1}, 8, seed=0)
    assert sorted(j.view for j in kept) == ["AP"] * 2 + ["PA"] * 6
    assert note == "negatives: views matched to the positives' (AP 1, PA 3): AP 2, PA 6"
    again, _ = subsample_matching(jobs, {"PA": 3, "AP": 1}, 8, seed=0)
    assert [j.key for j in again] == [j.key for j in kept]  # seeded
    few, note = subsample_matching(jobs[:12], {"AP": 1}, 5, seed=0)  # PA0..9, AP0, AP1
    assert [j.key for j in few] == ["AP0", "AP1"] and "AP 2 (wanted 5, only 2)" in note


# ------------------------------------------------------------------------------ 9. the DDIM grid


def test_ddim_grids_capture_the_papers_window_on_both():
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.ldm.ddim import inversion_timesteps

    assert HeatmapSettings(timestep_spacing="leading").window()["timesteps"] == [690, 400]
    assert HeatmapSettings(timestep_spacing="trailing").window()["timesteps"] == [699, 409]
    trailing = inversion_timesteps(100, 1000, "trailing")
    assert trailing == sorted(int(t) for t in np.arange(1000, 0, -10) - 1)  # the 2024 code's grid
    assert resolve("bench")["timestep_spacing"] == "trailing"
    assert resolve("bench", protocol="cxrg")["timestep_spacing"] == "leading"


# ------------------------------------------------------------------------------ 10. DICOM display


def _equalise_by_hand(eight: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist, written as a loop over grey levels (an independent implementation)."""
    counts = [int((eight == g).sum()) for g in range(256)]
    first = next(g for g in range(256) if counts[g])
    lut, running = [0] * 256, 0
    for g in range(first + 1, 256):
        running += counts[g]
        lut[g] = int(np.rint(np.float32(running) * np.float32(255.0 / (eight.size - counts[first]))))
    return np.array([[lut[v] for v in row] for row in eight], dtype=np.float64) / 255


def test_mimic_jpg_on_a_hand_worked_dicom(tmp_path):
    from cxrg.images import dicom_display, read_image

    pixels = np.array([[0, 100], [200, 400]], dtype=np.uint16)
    plain = write_dicom(tmp_path / "m2.dcm", pixels, WindowCenter=200, WindowWidth=400)
    inverted = write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1")
    with dicom_display("mimic-jpg"):
        # 8 bits: floor(v / 400 * 255) = 0, 63, 127, 255; equalised: each grey once -> 0, 85, 170, 255
        np.testing.assert_array_equal(read_image(plain) * 255, [[0, 85], [170, 255]])
        # inverted 255, 192, 128, 0 -> equalised 255, 170, 85, 0
        np.testing.assert_array_equal(read_image(inverted) * 255, [[255, 170], [85, 0]])
    windowed = read_image(plain)  # the file's window 200/400, cxrg's reading
    assert not np.allclose(windowed * 255, [[0, 85], [170, 255]])


def test_mimic_jpg_on_the_shipped_radiograph():
    from cxrg.images import dicom_display, read_image

    path = data_store_file("RG1_UNCR.dcm")
    import pydicom

    ds = pydicom.dcmread(path)
    raw = (ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1))
           + float(ds.get("RescaleIntercept", 0)))
    assert str(ds.PhotometricInterpretation).strip() == "MONOCHROME1"
    sub = raw[::16, ::16]  # the loop below is slow: a 1-in-16 grid of the real radiograph, worked by hand
    eight = 255 - np.floor((sub - sub.min()) / (sub.max() - sub.min()) * 255).astype(np.uint8)
    from cxrg.images import mimic_jpg

    np.testing.assert_array_equal(mimic_jpg(sub, True), _equalise_by_hand(eight).astype(np.float32))
    with dicom_display("mimic-jpg"):  # the reader applies the same conversion to the whole file
        image = read_image(path)
    assert image.shape == (1955, 1841)
    np.testing.assert_array_equal(image, mimic_jpg(raw, True))
    assert abs(float(image.mean()) - 0.5) < 0.02  # equalised: the mean grey is about half
    assert not np.allclose(image, read_image(path))  # the window reading differs


# ------------------------------------------------------------------------------ 11. smaller ones


def test_eq7_candidates_whole_lut_or_lung_locations():
    from cxrg.anatomy.lut import Lut
    from cxrg.bench.vindr import prompt_for_boxes

    lut = Lut.default()
    (g,) = lut["cardiomegaly"]
    mx, my, sx, sy = g.mu[0], g.mu[1], g.sigma[0], g.sigma[1]
    box = np.array([[mx - 3 * sx, my - 3 * sy, mx + 3 * sx, my + 3 * sy]])  # the heart's Gaussian, eq. 6
    lung = prompt_for_boxes("Consolidation", box, 512, 512, lut, "lung")
    whole = prompt_for_boxes("Consolidation", box, 512, 512, lut, "lut")
    assert whole == "consolidation"  # nearest is the cardiac silhouette, no lung location
    assert lung != whole and lung.endswith(" consolidation")


def test_upsampling_nearest_as_torch_and_bilinear():
    from cxrg.geometry import ResizeCenterCrop

    rng = np.random.default_rng(0)
    heat = rng.random((4, 4)).astype(np.float32)
    transform = ResizeCenterCrop(4)
    nearest = transform.heatmap_to_image(heat, 8, 8, "nearest")
    expected = torch.nn.functional.interpolate(torch.tensor(heat)[None, None], size=(8, 8), mode="nearest")
    np.testing.assert_array_equal(nearest, expected[0, 0].numpy())
    bilinear = transform.heatmap_to_image(heat, 8, 8)
    expected = torch.nn.functional.interpolate(torch.tensor(heat)[None, None], size=(8, 8), mode="bilinear",
                                               align_corners=False)
    np.testing.assert_allclose(bilinear, expected[0, 0].numpy(), atol=1e-6)
    assert resolve("bench")["heatmap_upsampling"] == "nearest"
    assert resolve("bench", protocol="cxrg")["heatmap_upsampling"] == "bilinear"


def test_the_protocols_ldm_defaults_reach_both_ldm_models(tmp_path, monkeypatch):
    """Benching ldm and ldm-frozen together, each gets the paper's nearest upsampling (before, the value set
    for ldm counted as given for ldm-frozen too, which then kept bilinear); -o for one model leaves the
    other's default alone."""
    from cxrg.bench.runner import ldm_defaults

    monkeypatch.chdir(tmp_path)
    cfg = load_config(warn=False)
    resolved = resolve("bench", cfg=cfg)
    pairs: dict[str, dict[str, str]] = {}
    ldm_defaults(cfg, pairs, ["ldm", "ldm-frozen", "prior"], resolved)
    assert pairs == {"ldm": {"upsampling": "nearest"},
                     "ldm-frozen": {"timestep_spacing": "trailing", "upsampling": "nearest"}}
    pairs = {"ldm": {"upsampling": "bilinear"}}
    ldm_defaults(cfg, pairs, ["ldm", "ldm-frozen"], resolved)
    assert pairs == {"ldm": {"upsampling": "bilinear"},
                     "ldm-frozen": {"timestep_spacing": "trailing", "upsampling": "nearest"}}
    pairs = {"*": {"upsampling": "bilinear"}}  # -o upsampling=bilinear: every model
    ldm_defaults(cfg, pairs, ["ldm", "ldm-frozen"], resolved)
    assert pairs == {"*": {"upsampling": "bilinear"}, "ldm-frozen": {"timestep_spacing": "trailing"}}


# ------------------------------------------------------------------------------ bench, both protocols


@pytest.mark.parametrize("protocol", ["paper", "cxrg"])
def test_bench_runs_on_ms_cxr_ms_cxr_loc_and_vindr(protocol, ms_cxr, vindr, tmp_path, capsys):  # noqa: F811
    annotations, images = ms_cxr
    for dataset, more in (("ms-cxr", []), ("ms-cxr-loc", ["--extractor", "rules"])):
        out = tmp_path / f"{protocol}-{dataset}"
        assert run_cli("bench", "--models", "oracle,prior", "--dataset", dataset, "--annotations",
                       str(annotations), "--images", str(images), "--out", str(out), "--resamples", "100",
                       "--protocol", protocol, "--no-save-heatmaps", *more) == 0, capsys.readouterr().err
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["protocol"] == protocol
        assert config["choices"]["loc_pairs"]["value"] == ("phrase" if protocol == "paper" else "merged")
        assert set(config["choices"]) == {c.name for c in CHOICES if "bench" in c.commands}
    err = capsys.readouterr().err
    assert "(Table 1: N=" in err
    v_annotations, v_images = vindr
    out = tmp_path / f"{protocol}-vindr"
    assert run_cli("bench", "--models", "oracle,prior", "--dataset", "vindr-cxr", "--annotations",
                   str(v_annotations), "--images", str(v_images), "--out", str(out), "--resamples", "100",
                   "--protocol", protocol, "--no-save-heatmaps") == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["choices"]["dicom_display"]["value"] == ("mimic-jpg" if protocol == "paper" else "window")
    assert config["choices"]["vindr_candidates"]["value"] == ("lut" if protocol == "paper" else "lung")


def test_prompt_style_moves_bench_prompts_and_vindr_prompts_and_nothing_else():
    from cxrg.anatomy.lut import Lut
    from cxrg.bench.runner import normalise_prompts
    from cxrg.bench.samples import Sample
    from cxrg.bench.vindr import prompt_for_boxes

    def read(style: str) -> list[str]:
        samples = [Sample("a", None, "Pleural Effusion", "Small left effusion"),
                   Sample("b", None, "Edema", "bibasilar edema"),
                   Sample("c", None, "Pneumonia", "Left lower lobe pneumonia")]
        normalise_prompts(samples, False, lambda text: None, style)
        return [s.vocabulary_prompt or s.prompt for s in samples]

    assert read("cxrg") == ["left pleural pleural effusion", "bibasilar edema", "left lower pneumonia"]
    assert read("paper") == ["left pleural effusion", "pulmonary edema", "left lower pneumonia"]
    lut = Lut.default()
    box = np.array([[300.0, 320.0, 420.0, 460.0]])  # the image's right half, low: the patient's left base
    for style in ("cxrg", "paper"):  # a box is placed at a zone: the two styles agree on effusions
        assert prompt_for_boxes("Pleural Effusion", box, 512, 512, lut, "lung", style) == \
            "left lower pleural effusion"
    assert prompt_for_boxes("Edema", box, 512, 512, lut, "lung", "cxrg") == "left lower edema"
    assert prompt_for_boxes("Edema", box, 512, 512, lut, "lung", "paper") == "pulmonary edema"
