"""Issue 12: the places where cxrg must compute what the paper describes (each test fails on cxrg 0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cxrg_test_support import MS_CXR_HEADER, mimic_path
from cxrg_test_support import run_cli as cli
from PIL import Image

from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine, reference_maps
from cxrg.ldm.text import content_positions, tokenize
from cxrg.ldm.tokenizer import load_tokenizer
from cxrg.tuning.losses import tuning_losses

IMAGE = np.random.default_rng(1).random((70, 90)).astype(np.float32)


def test_capture_window_is_counted_from_noise_to_image_by_default():
    # "following the reverse diffusion process (mapping from noise to image latents) ... [30, 60]"
    paper = HeatmapSettings()
    assert paper.capture_order == "denoising"
    assert paper.inversion_steps == tuple(range(69, 39, -1))
    assert paper.window()["timesteps"] == [690, 400]
    assert HeatmapSettings(capture_order="inversion").window()["timesteps"] == [590, 300]  # cxrg 0.1


def test_the_binding_token_and_is_not_among_the_loss_tokens():
    tokenizer = load_tokenizer()
    ids, spans = tokenize(tokenizer, ["left lower and right upper pneumonia"])
    positions = content_positions(tokenizer, ids[0].tolist(), spans[0])
    words = tokenizer.convert_ids_to_tokens([int(ids[0, p]) for p in positions])
    assert "and</w>" not in words
    assert words == ["left</w>", "lower</w>", "right</w>", "upper</w>", "pneumonia</w>"]
    assert len(positions) == spans[0].stop - spans[0].start - 1


def test_div_weight_scales_only_the_diversity_term():
    maps = torch.rand(2, 1, 16, 3, generator=torch.Generator().manual_seed(0))
    gaussian = torch.rand(16, generator=torch.Generator().manual_seed(1))
    full, off = tuning_losses(maps, gaussian), tuning_losses(maps, gaussian, div_weight=0.0)
    assert float(off.total) == pytest.approx(float(full.loc))
    assert float(full.total) == pytest.approx(float(full.div + full.loc))


def test_layers_of_different_resolutions_are_brought_to_one_size(ldm):
    layers = ("down_blocks.1.attentions.0.transformer_blocks.0.attn2",  # finer than the bottleneck
              "middle_block.attention.transformer_blocks.0.attn2")
    settings = HeatmapSettings(otsu=False, inference_steps=10, capture_steps=(3, 5), layers=layers)
    engine = LdmEngine(ldm, settings)
    fast = engine.maps(IMAGE, ["left pneumonia"])[0]
    slow = reference_maps(engine, IMAGE, ["left pneumonia"])[0]
    assert fast.shape == (64, 64) and np.abs(fast - slow).max() <= 1e-4


def _study(tmp_path: Path, tiny: Path) -> Path:
    """A folder with cxrg.toml ([ldm] inference_steps = 10) and MS-CXR-format data."""
    images = tmp_path / "images"
    rows = []
    for k, (dicom, category, phrase, box) in enumerate([
            ("d1", "Pneumonia", "left lower pneumonia", (10, 20, 30, 20)),
            ("d2", "Pleural Effusion", "right pleural pleural effusion", (50, 40, 25, 20))]):
        path = images / mimic_path(dicom)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(k).integers(0, 255, (80, 96), dtype=np.uint8)).save(path)
        rows.append(",".join(map(str, [dicom, category, phrase, mimic_path(dicom), *box, 96, 80])))
        rows[-1] += f",{phrase.upper()}"
    (tmp_path / "ms_cxr_loc.csv").write_text(",".join(MS_CXR_HEADER) + ",original_label_text\n"
                                             + "\n".join(rows) + "\n")
    (tmp_path / "cxrg.toml").write_text(f'weights = "{tiny}"\n[ldm]\ninference_steps = 10\n'
                                        "capture_steps = [3, 5]\n")
    return tmp_path


def test_ldm_settings_from_cxrg_toml_reach_bench_and_are_recorded(tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(_study(tmp_path, tiny))
    assert cli("bench", "--models", "ldm-frozen", "--dataset", "ms-cxr", "--annotations", "ms_cxr_loc.csv",
               "--images", "images", "--out", "b", "--resamples", "100") == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    settings = config["ldm_settings"]["ldm-frozen"]
    assert settings["inference_steps"] == 10 and settings["window"]["capture_steps"] == [3, 5]
    assert config["settings"]["sources"]["models.ldm-frozen.inference_steps"].endswith("cxrg.toml [ldm."
                                                                                         "inference_steps]")
    assert cli("bench", "--models", "ldm-frozen", "--dataset", "ms-cxr", "--annotations", "ms_cxr_loc.csv",
               "--images", "images", "--out", "c", "--resamples", "100", "-o", "capture_order=inversion") == 0
    other = json.loads((tmp_path / "c" / "config.json").read_text())["config"]["ldm_settings"]["ldm-frozen"]
    assert other["window"]["capture_order"] == "inversion" and other["inference_steps"] == 10


def test_unknown_option_is_a_usage_error(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.chdir(_study(tmp_path, tiny))
    assert cli("bench", "--models", "ldm-frozen,oracle", "--dataset", "ms-cxr", "--annotations",
               "ms_cxr_loc.csv", "--images", "images", "-o", "capture_ordr=inversion") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model here has an option 'capture_ordr'" in err


def test_prompt_text_original_scores_the_original_phrase(tmp_path, tiny, monkeypatch):
    monkeypatch.chdir(_study(tmp_path, tiny))
    (tmp_path / "cxrg.toml").write_text(f'weights = "{tiny}"\n')
    from cxrg.bench.datasets import read_ms_cxr

    data = read_ms_cxr(tmp_path / "ms_cxr_loc.csv", tmp_path / "images", prompt_text="original")
    assert [s.prompt for s in data.samples] == ["LEFT LOWER PNEUMONIA", "RIGHT PLEURAL PLEURAL EFFUSION"]
    assert [s.phrase for s in data.samples] == [s.prompt for s in data.samples]
    standard = read_ms_cxr(tmp_path / "ms_cxr_loc.csv", tmp_path / "images")
    assert [s.prompt for s in standard.samples] == ["left lower pneumonia", "right pleural pleural effusion"]
    assert cli("bench", "--models", "oracle", "--dataset", "ms-cxr", "--annotations", "ms_cxr_loc.csv",
               "--images", "images", "--prompt-text", "original") == 2  # only with ms-cxr-loc


def test_tune_and_classify_record_the_ldm_settings(tmp_path, tiny, monkeypatch):
    study = _study(tmp_path, tiny)
    monkeypatch.chdir(study)
    manifest = study / "manifest.csv"
    manifest.write_text("sample_id,image_path,prompt,locations,pathology\n"
                        f"s1,{mimic_path('d1')},left lower pneumonia,left lower,Pneumonia\n")
    assert cli("tune", "--manifest", str(manifest), "--images", "images", "--out", "t", "--steps", "1",
               "--no-install", "--div-weight", "0") == 0
    config = json.loads((study / "t" / "config.json").read_text())["config"]
    assert config["window"]["inference_steps"] == 10 and config["div_weight"] == 0.0
    assert config["shared_tokens"] == "trainable"
    from safetensors import safe_open

    with safe_open(str(study / "t" / "tuned_embeddings.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["window"])["capture_steps"] == [3, 5]
    negatives = study / "healthy.csv"
    negatives.write_text(f"image\n{mimic_path('d2')}\n")
    assert cli("classify", "--positives", "ms_cxr_loc.csv", "--images", "images", "--negatives",
               str(negatives), "--pathology", "Pneumonia", "--strategies", "none,location", "--draws", "2",
               "--resamples", "100", "--out", "k") == 0
    config = json.loads((study / "k" / "config.json").read_text())["config"]
    assert config["ldm_settings"]["inference_steps"] == 10 and config["weighting"] == "per-class"


def test_ground_records_the_ldm_settings(tmp_path, tiny, monkeypatch):
    study = _study(tmp_path, tiny)
    monkeypatch.chdir(study)
    image = study / "images" / mimic_path("d1")
    assert cli("ground", str(image), "left pneumonia", "--model", "ldm-frozen", "--out", "g") == 0
    summary = json.loads((study / "g" / "d1.ldm-frozen.json").read_text())
    assert summary["model_settings"]["inference_steps"] == 10
    assert summary["model_settings"]["window"]["capture_order"] == "denoising"


def test_tune_keeps_the_previous_default_embeddings(tmp_path, capsys):
    from cxrg.tuning.command import install_embeddings

    target = tmp_path / "w" / "tuned_embeddings.safetensors"
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    assert install_embeddings(first, target) is None and target.read_bytes() == b"first"
    kept = install_embeddings(second, target)
    assert target.read_bytes() == b"second" and kept is not None and kept.read_bytes() == b"first"
    assert kept.name.startswith("tuned_embeddings.") and kept.suffix == ".safetensors"
    assert f"the previous ones are kept as {kept.name}" in capsys.readouterr().err
    assert install_embeddings(second, target) is None  # the same result twice: nothing to keep


def test_unknown_model_is_a_usage_error_with_a_suggestion(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    assert cli("bench", "--models", "oracle,priro", "--dataset", "ms-cxr", "--annotations", str(annotations),
               "--images", str(images), "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'priro' (did you mean 'prior'?)" in err
    assert not (tmp_path / "r" / "per_sample.csv").exists()


def test_iu_manifest_rows_find_open_i_file_names(tmp_path):
    from cxrg.tuning.data import read_manifest

    images = tmp_path / "openi"
    images.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(images / "CXR3_IM-1384-1001.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(images / "7_IM-2263-1001.dcm.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("sample_id,image_path,prompt\n"
                        "a,3_IM-1384-1001.dcm.png,left lower pneumonia\n"  # Kaggle name, Open-i file
                        "b,CXR7_IM-2263-1001.png,right pleural pleural effusion\n"  # and the other way
                        "c,9_IM-0001-1001.dcm.png,left pneumothorax\n"
                        "d,,left pneumothorax\n")
    data = read_manifest(manifest, images)
    assert [s.image_path.name for s in data.samples] == ["CXR3_IM-1384-1001.png", "7_IM-2263-1001.dcm.png"]
    assert [sid for sid, _ in data.skipped] == ["c", "d"]


def test_the_engine_reports_progress_over_its_passes(ldm):
    engine = LdmEngine(ldm, HeatmapSettings(inference_steps=10, capture_steps=(3, 5)), batch_size=1)
    seen = []
    engine.progress = lambda stage, done, total: seen.append((stage, done, total))
    engine.maps(IMAGE, ["left pneumonia"])
    inversion = [s for s in seen if s[0] == "inversion"]
    attention = [s for s in seen if s[0] == "attention"]
    assert inversion[-1] == ("inversion", 6, 6)  # indices 3,4 counted noise -> image: inversion 6,5
    assert [a[1] for a in attention] == [1, 2] and attention[-1][2] == 2


def test_overlay_display_window_stretches_percentiles():
    from cxrg.grounding import display_window

    image = np.full((100, 100), 0.4, np.float32)
    image[:50] = 0.45  # a wide DICOM window leaves the anatomy in a narrow band
    image[0, 0], image[-1, -1] = 0.0, 1.0  # markers must not set the contrast
    shown = display_window(image)
    assert shown[10, 10] == pytest.approx(1.0) and shown[60, 60] == pytest.approx(0.0)
    assert (display_window(np.full((4, 4), 0.3, np.float32)) == 0).all()


def test_tune_reads_manifest_prompts_like_every_other_command(tmp_path):
    from cxrg.tuning.data import read_manifest

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("sample_id,image_path,prompt\n"
                        "a,a.png,cardiomegaly cardiomegaly\n"   # an old manifest's spelling
                        "b,a.png,Left lower lobe pneumonia\n"   # free text
                        "c,a.png,no pneumothorax\n")            # not a finding: skipped with its reason
    data = read_manifest(manifest, tmp_path)
    assert [(s.prompt, s.locations) for s in data.samples] == [
        ("cardiomegaly", ("cardiomegaly",)), ("left lower pneumonia", ("left lower",))]
    assert [sid for sid, _ in data.skipped] == ["c"]


def test_models_info_lists_the_options(capsys):
    assert cli("models", "info", "ldm") == 0
    out = capsys.readouterr().out
    assert "prompts: vocabulary" in out
    assert "  capture_order [str (denoising | inversion), default unset]:" in out
    assert "  allow_window_mismatch [bool, default False]:" in out
    assert cli("models", "info", "prior", "--json") == 0
    card = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in card["options"]] == ["lut"] and card["prompts"] == "vocabulary"
