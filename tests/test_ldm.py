"""The LDM engine on a tiny random model of the real classes: loading, text, capture, heatmaps, models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from cxrg_test_support import run_cli as cli

from cxrg.errors import InputError, MissingWeightsError
from cxrg.ldm.attention import capture, cross_attention_layers, run_until_captured
from cxrg.ldm.config import DEFAULT_LAYERS, HeatmapSettings, architecture_from_bundle
from cxrg.ldm.ddim import inversion_timesteps, invert_step, to_x0_and_eps
from cxrg.ldm.heatmap import LdmEngine, otsu_threshold, reference_maps
from cxrg.ldm.loading import load_ldm, read_checkpoint, to_old_layout
from cxrg.ldm.text import Codebook, encode, tokenize, vocabulary_rows
from cxrg.ldm.tiny import TINY
from cxrg.ldm.tokenizer import load_tokenizer
from cxrg.ldm.weights import WeightPaths
from cxrg.models.ldm import LdmFrozenModel, LdmTunedModel, LdmTunedOptions
from cxrg.registry import Query
from cxrg.testing import check_model

IMAGE = np.random.default_rng(0).random((80, 100)).astype(np.float32)


# ------------------------------------------------------------------------------------ text


def test_offline_tokenizer_matches_sd21_ids():
    tok = load_tokenizer()
    assert len(tok.get_vocab()) == 49408 and tok.bos_token_id == 49406 and tok.eos_token_id == 49407
    assert tok("left", add_special_tokens=False).input_ids == [1823]
    assert tok("pleural effusion", add_special_tokens=False).input_ids == [926, 33948, 1490, 9364]
    assert tok.convert_ids_to_tokens(tok("costophrenic", add_special_tokens=False).input_ids) == \
        ["co", "stop", "h", "re", "nic</w>"]
    ids, spans = tokenize(tok, ["left lower pleural effusion", ""])
    assert ids.shape == (2, 77) and ids[0, :8].tolist() == [49406, 1823, 4909, 926, 33948, 1490, 9364, 49407]
    assert ids[0, 8:].eq(0).all()  # padded with "!" (id 0), as SD 2.1
    assert (spans[0].start, spans[0].stop) == (1, 7) and (spans[1].start, spans[1].stop) == (1, 1)


def test_codebook_rows_follow_the_vocabulary():
    ids, anatomy = vocabulary_rows(load_tokenizer())
    assert len(ids) == 46  # the paper's count
    assert ids[:3] == [49406, 49407, 537]
    assert sum(anatomy) == 26  # every location sub-token, shared ones included (the default)
    tok = load_tokenizer()
    names = dict(zip(tok.convert_ids_to_tokens(ids), anatomy, strict=True))
    assert names["left</w>"] and names["ap"] and names["bi"] and names["ling"]
    assert names["cardi"] and names["ple"]  # shared with a pathology: trainable by default
    assert not names["pneumonia</w>"] and not names["and</w>"] and not names["ef"]
    _, frozen = vocabulary_rows(tok, "frozen")
    frozen_names = dict(zip(tok.convert_ids_to_tokens(ids), frozen, strict=True))
    assert sum(frozen) == 20 and not frozen_names["cardi"] and not frozen_names["ple"]
    assert frozen_names["left</w>"]


def test_codebook_swaps_rows_and_only_it_gets_gradients(ldm):
    codebook = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)
    ids, _ = tokenize(ldm.tokenizer, ["left lower pleural effusion"])
    plain = encode(ldm.text_encoder, ids)
    swapped = encode(ldm.text_encoder, ids, codebook)
    torch.testing.assert_close(plain, swapped)  # rows start as the encoder's own embeddings
    row = int((codebook.token_ids == 1823).nonzero()[0, 0])  # "left"
    with torch.enable_grad():
        out = encode(ldm.text_encoder, ids, codebook)
        out.square().sum().backward()
    assert codebook.rows.grad is not None and codebook.rows.grad[row].abs().sum() > 0
    assert all(p.grad is None for p in ldm.text_encoder.parameters())
    unused = int((codebook.token_ids == 537).nonzero()[0, 0])  # "and" is not in this prompt
    assert codebook.rows.grad[unused].abs().sum() == 0
    with torch.no_grad():
        codebook.rows[row] += 1.0
    assert not torch.allclose(encode(ldm.text_encoder, ids, codebook), plain)


# ------------------------------------------------------------------------------------ loading


def test_old_layout_checkpoint_loads_and_equals_the_original(tiny, ldm):
    from cxrg.ldm.tiny import build_random, tiny_text_config

    autoencoder, unet, _ = build_random(TINY, tiny_text_config(), seed=0)
    original_ae, original = autoencoder.state_dict(), unet.state_dict()
    assert unet.out[2].conv.weight.abs().sum() > 0  # MONAI's zero-initialised output, randomised
    saved = read_checkpoint(WeightPaths(tiny).unet)
    assert any(".to_out.0." in k for k in saved) and not any("out_proj" in k for k in saved)  # old keys
    for key, value in original.items():
        torch.testing.assert_close(ldm.unet.state_dict()[key], value)
    for key, value in original_ae.items():
        torch.testing.assert_close(ldm.autoencoder.state_dict()[key], value)
    assert set(to_old_layout(original)) == set(saved)


def test_architecture_from_a_bundle_inference_json(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "inference.json").write_text(json.dumps({
        "autoencoder_def": {"_target_": "generative.networks.nets.AutoencoderKL", "num_channels": [64, 128],
                            "latent_channels": 3},
        "diffusion_def": {"_target_": "generative.networks.nets.DiffusionModelUNet", "num_channels": [256]},
        "scheduler": {"beta_schedule": "scaled_linear", "beta_start": 0.0015, "beta_end": 0.0205,
                      "num_train_timesteps": 1000, "prediction_type": "v_prediction"}}))
    arch = architecture_from_bundle(tmp_path)
    assert arch.autoencoder == {"channels": [64, 128], "latent_channels": 3}
    assert arch.unet == {"channels": [256]} and arch.scheduler["schedule"] == "scaled_linear_beta"


def test_missing_weights_name_the_file(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        load_ldm(tmp_path)
    message = info.value.one_line()
    assert "LDM autoencoder not found" in message and str(tmp_path) in message and "prior" in message


# ------------------------------------------------------------------------------------ DDIM


def test_inversion_step_matches_monai_reversed_step():
    from monai.networks.schedulers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                              beta_end=0.0205, prediction_type="v_prediction", clip_sample=False)
    scheduler.set_timesteps(100)
    sample = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    output = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    expected, _ = scheduler.reversed_step(output, 300, sample)  # from level 300 to 310
    ours = invert_step(sample, output, 300, 310, scheduler.alphas_cumprod.double(), "v_prediction")
    torch.testing.assert_close(ours, expected.double())


def test_v_to_eps_is_the_scheduler_definition():
    a = torch.tensor(0.64, dtype=torch.float64)
    x0, eps = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    noisy = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0  # v-prediction target (Salimans & Ho 2022)
    got_x0, got_eps = to_x0_and_eps(noisy, v, a, "v_prediction")
    torch.testing.assert_close(got_x0, x0)
    torch.testing.assert_close(got_eps, eps)


def test_timestep_grids():
    assert inversion_timesteps(100)[30:33] == [300, 310, 320] and inversion_timesteps(100)[-1] == 990
    assert inversion_timesteps(100, spacing="trailing")[:2] == [9, 19]
    assert inversion_timesteps(100, spacing="trailing")[-1] == 999


def test_otsu_against_brute_force():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.7, 0.1, 1000)]).clip(0, 1)
    counts, edges = np.histogram(values, bins=256, range=(values.min(), values.max()))
    centres = (edges[:-1] + edges[1:]) / 2

    def between(k):  # class 0 = bins 0..k
        w0, w1 = counts[:k + 1].sum(), counts[k + 1:].sum()
        m0 = (counts[:k + 1] * centres[:k + 1]).sum() / w0
        m1 = (counts[k + 1:] * centres[k + 1:]).sum() / w1
        return w0 * w1 * (m0 - m1) ** 2

    best = max(range(255), key=between)
    assert otsu_threshold(values) == pytest.approx(centres[best])
    assert 0.35 < otsu_threshold(values) < 0.55


# ------------------------------------------------------------------------------------ capture


def test_capture_shapes_restoration_and_early_stop(ldm):
    unet = ldm.unet
    layers = cross_attention_layers(unet)
    assert set(DEFAULT_LAYERS) <= set(layers)
    latent = torch.randn(2, 3, 16, 16)
    ctx = torch.randn(2, 77, 32)
    t = torch.tensor([300, 300])
    with torch.no_grad():
        before = unet(latent, timesteps=t, context=ctx)
        with capture(unet, layers) as got:
            during = unet(latent, timesteps=t, context=ctx)
        after = unet(latent, timesteps=t, context=ctx)
    torch.testing.assert_close(during, before, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after, before)
    sizes = {name: got.maps[name][0].shape for name in layers}
    assert sizes["middle_block.attention.transformer_blocks.0.attn2"] == (2, 2, 16, 77)  # 4x4 bottleneck
    assert sizes["down_blocks.1.attentions.0.transformer_blocks.0.attn2"] == (2, 2, 64, 77)
    probs = got.maps[DEFAULT_LAYERS[0]][0]
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 16))
    assert all("forward" not in dict(unet.named_modules())[n].__dict__ for n in layers)
    with pytest.raises(RuntimeError, match="boom"), capture(unet, layers):
        raise RuntimeError("boom")
    assert all("forward" not in dict(unet.named_modules())[n].__dict__ for n in layers)
    calls = []
    handle = unet.out.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad(), capture(unet, DEFAULT_LAYERS, stop_after_last=True) as early:
        run_until_captured(unet, latent, timesteps=t, context=ctx)
    handle.remove()
    assert not calls and len(early.maps[DEFAULT_LAYERS[-1]]) == 1
    with torch.enable_grad(), capture(unet, DEFAULT_LAYERS[:1], keep_grad=True) as graded:
        run_until_captured(unet, latent, timesteps=t, context=ctx.requires_grad_())
    assert graded.maps[DEFAULT_LAYERS[0]][0].requires_grad


# ------------------------------------------------------------------------------------ heatmaps


@pytest.mark.parametrize("otsu,order", [(False, "denoising"), (True, "denoising"), (False, "inversion")])
def test_fast_path_equals_reference(ldm, otsu, order):
    engine = LdmEngine(ldm, HeatmapSettings(otsu=otsu, capture_order=order), batch_size=7)
    prompts = ["left lower pleural effusion", "cardiomegaly"]
    fast = engine.maps(IMAGE, prompts)
    slow = reference_maps(engine, IMAGE, prompts)
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == (64, 64) and f.dtype == np.float32
        if otsu:
            assert ((f > 0) == (s > 0)).mean() > 0.999
        else:
            assert np.abs(f - s).max() <= 1e-4 * np.abs(s).max()
            assert f.min() == 0 and f.max() == pytest.approx(1)


def test_inversion_runs_once_per_image(ldm, monkeypatch):
    engine = LdmEngine(ldm, HeatmapSettings(inference_steps=10, capture_steps=(3, 4)))
    calls = []
    original = engine.encode_image
    monkeypatch.setattr(engine, "encode_image", lambda x: calls.append(1) or original(x))
    engine.maps(IMAGE, ["left pneumonia"])
    engine.maps(IMAGE, ["right pneumonia", "bilateral pneumonia"])
    assert len(calls) == 1
    engine.maps(IMAGE[::-1].copy(), ["left pneumonia"])
    assert len(calls) == 2


def test_heatmap_geometry_on_a_non_square_image(ldm):
    engine = LdmEngine(ldm, HeatmapSettings(inference_steps=10, capture_steps=(3, 4)))
    heat = engine.heatmaps(IMAGE, ["left lower pneumonia"])[0]  # 80 x 100: crop 10 columns each side
    assert heat.shape == (80, 100)
    assert np.isnan(heat[:, :10]).all() and np.isnan(heat[:, 90:]).all()
    assert np.isfinite(heat[:, 10:90]).all()


# ------------------------------------------------------------------------------------ models


def test_ldm_frozen_conforms(tiny, monkeypatch):
    monkeypatch.setenv("CXRG_LDM_BATCH", "15")
    check_model(LdmFrozenModel(), weights_dir=tiny, prompt="small patchy opacity")


def test_ldm_tuned_conforms_and_checks_prompts_and_files(tiny, ldm, tmp_path, monkeypatch):
    codebook = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)
    weights = tmp_path / "w"
    shutil.copytree(tiny, weights)
    window = json.dumps(HeatmapSettings().window())
    codebook.save(WeightPaths(weights).tuned_embeddings, {"text_encoder": ldm.fingerprint, "window": window})
    check_model(LdmTunedModel(), weights_dir=weights)
    model = LdmTunedModel()
    model.load(weights)
    with pytest.raises(InputError, match="only grounds vocabulary prompts"):
        model.heatmap(Query(image=IMAGE, prompt="small patchy opacity"))
    frozen = LdmFrozenModel()
    frozen.load(weights)
    same = model.heatmap(Query(image=IMAGE, prompt="left pneumonia"))
    # untuned rows: the tuned model is the frozen one without the Otsu threshold
    raw = LdmEngine(ldm, HeatmapSettings(otsu=False)).heatmaps(IMAGE, ["left pneumonia"])[0]
    np.testing.assert_allclose(same, raw, rtol=1e-5, atol=1e-6)
    other = tmp_path / "other.safetensors"
    codebook.save(other, {"text_encoder": "0" * 32})
    with pytest.raises(InputError, match="made for another text encoder"):
        LdmTunedModel().load(weights, options=LdmTunedOptions(embeddings=other))


def test_tuned_embeddings_of_another_capture_window_are_refused_unless_allowed(tiny, ldm, tmp_path):
    codebook = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)
    old = tmp_path / "old.safetensors"  # cxrg 0.1: window in the hyperparameters, counted image -> noise
    codebook.save(old, {"text_encoder": ldm.fingerprint, "hyperparameters": {
        "settings": HeatmapSettings(capture_order="inversion").to_dict()}})
    with pytest.raises(InputError, match="capture_order 'inversion', the heatmaps use 'denoising'"):
        LdmTunedModel().load(tiny, options=LdmTunedOptions(embeddings=old))
    LdmTunedModel().load(tiny, options=LdmTunedOptions(embeddings=old, allow_window_mismatch=True))
    LdmTunedModel().load(tiny, options=LdmTunedOptions(embeddings=old, capture_order="inversion"))
    layers = tmp_path / "layers.safetensors"
    window = HeatmapSettings().window() | {"layers": ["middle_block.attention.transformer_blocks.0.attn2"]}
    codebook.save(layers, {"text_encoder": ldm.fingerprint, "window": json.dumps(window)})
    with pytest.raises(InputError, match="made with layers"):
        LdmTunedModel().load(tiny, options=LdmTunedOptions(embeddings=layers))


# ------------------------------------------------------------------------------------ commands




def test_weights_tiny_and_status(tmp_path, capsys):
    assert cli("weights", "status", "--weights", str(tmp_path / "none")) == 1
    out = capsys.readouterr().out
    assert out.count("MISSING") == 4 and "get it:" in out
    assert cli("weights", "tiny", str(tmp_path / "tiny"), "--seed", "3") == 0
    assert cli("weights", "status", "--weights", str(tmp_path / "tiny")) == 0
    out = capsys.readouterr().out
    assert out.count("ok (test)") == 4 and "absent    tuned embeddings" in out
    assert "NOTE: not the real weights: tiny random LDM, seed 3" in out


def test_weights_fetch_from_a_local_fake_repository(tiny, tmp_path, monkeypatch, capsys):
    import cxrg.ldm.fetch as fetch

    bundle = "cxr_image_synthesis_latent_diffusion_model"
    hub = {f"MONAI/{bundle}": tiny / bundle,
           "stabilityai/stable-diffusion-2-1-base": tiny / "stable-diffusion-2-1-base"}
    asked = []

    def fake_snapshot(repo_id, local_dir, patterns):
        asked.append((repo_id, patterns))
        shutil.copytree(hub[repo_id], local_dir, dirs_exist_ok=True)

    monkeypatch.setattr(fetch, "snapshot", fake_snapshot)
    assert cli("weights", "fetch", "--weights", str(tmp_path / "w")) == 0
    assert [a[0] for a in asked] == list(hub)
    assert asked[1][1] == ["text_encoder/*", "tokenizer/*"]
    assert "weights ready" in capsys.readouterr().out
    assert cli("weights", "fetch", "--weights", str(tmp_path / "w")) == 0 and len(asked) == 2  # nothing to do


def test_weights_fetch_offline_fails_fast_with_one_line(tmp_path, monkeypatch, capsys):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    assert cli("weights", "fetch", "--weights", str(tmp_path)) == 1
    assert time.perf_counter() - started < 30
    err = capsys.readouterr().err
    assert err.startswith("cxrg: error: could not download MONAI/") and err.count("\n") == 1


def test_ground_and_bench_run_the_ldm(tiny, tmp_path, ms_cxr, capsys):
    from cxrg.demo import demo_image_path

    assert cli("ground", str(demo_image_path()), "small left effusion", "--model", "ldm-frozen",
               "--weights", str(tiny), "--out", str(tmp_path / "g")) == 0
    heat = np.load(tmp_path / "g" / "RG1_UNCR.ldm-frozen.heatmap.npy")
    assert heat.shape == (1955, 1841) and np.isnan(heat[:50]).all() and np.isfinite(heat[100:1800]).all()
    annotations, images = ms_cxr
    assert cli("bench", "--models", "ldm-frozen,oracle", "--dataset", "ms-cxr", "--annotations",
               str(annotations), "--images", str(images), "--weights", str(tiny),
               "--out", str(tmp_path / "b"), "--resamples", "200", "--limit", "3") == 0
    rows = (tmp_path / "b" / "per_sample.csv").read_text().splitlines()
    assert len(rows) == 7 and all(row.rsplit(",", 2)[1] == "" for row in rows[1:])  # no error filled
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    window = config["ldm_settings"]["ldm-frozen"]["window"]
    # the paper protocol (default): the 2024 code's trailing grid, indices 30..59 counted noise -> image
    assert window["capture_order"] == "denoising" and window["timesteps"] == [699, 409]
    assert config["ldm_settings"]["ldm-frozen"]["upsampling"] == "nearest"
    assert config["choices"]["timestep_spacing"] == {"value": "trailing", "source": "protocol paper"}
