"""`cxrg tune` on the tiny LDM and phantoms: files, frozen rows, resume, NaN, chunking, fast == naive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cxrg_test_support import run_cli as cli
from safetensors.torch import load_file

from cxrg.anatomy.lut import Lut
from cxrg.errors import CxrgError, InputError
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.loading import load_ldm
from cxrg.ldm.text import Codebook
from cxrg.runs import RunDir
from cxrg.tuning.data import read_manifest
from cxrg.tuning.losses import Losses
from cxrg.tuning.naive import naive_sample_gradients
from cxrg.tuning.trainer import Trainer, TuneConfig, sample_for

QUICK = HeatmapSettings(inference_steps=20, capture_steps=tuple(range(6, 12)), otsu=False)


def trainer(tiny, phantoms, out: Path, **changes) -> Trainer:
    manifest, images = phantoms
    config = TuneConfig(**{"steps": 4, "checkpoint_every": 2, "chunk": 6, "settings": QUICK, **changes})
    run = RunDir(out, "tune", {"test": True})
    return Trainer(load_ldm(tiny), Lut.default(), read_manifest(manifest, images), config, run, out / "cache")




def test_cli_tunes_only_anatomy_rows_and_ldm_uses_the_result(tiny, phantoms, tmp_path, capsys):
    manifest, images = phantoms
    out = tmp_path / "run"
    weights = tmp_path / "weights"
    shutil.copytree(tiny, weights)
    assert cli("tune", "--manifest", str(manifest), "--images", str(images), "--out", str(out),
               "--weights", str(weights), "--steps", "3", "--lr", "0.05", "--checkpoint-every", "2") == 0
    assert (weights / "tuned_embeddings.safetensors").read_bytes() == \
        (out / "tuned_embeddings.safetensors").read_bytes()  # installed as the default
    for name in ("tuned_embeddings.safetensors", "losses.csv", "loss_curve.png", "checkpoint.safetensors",
                 "checkpoint.json", "config.json", "log.txt"):
        assert (out / name).exists(), name
    # header, the probe's record before training (one of the 6 samples held out), 3 steps
    assert len((out / "losses.csv").read_text().splitlines()) == 5
    ldm = load_ldm(tiny)
    start = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)
    tuned, meta = Codebook.load(out / "tuned_embeddings.safetensors", fingerprint=ldm.fingerprint)
    moved = (tuned.rows != start.rows).any(dim=1)
    assert torch.equal(tuned.rows[~start.anatomy], start.rows[~start.anatomy])  # bit-identical
    assert moved[start.anatomy].any()  # some anatomy row of the prompts moved
    hyper = json.loads(meta["hyperparameters"])
    assert hyper["lr"] == 0.05 and hyper["alpha"] == 0.1 and meta["samples"] == "6"
    assert "manifest: 6 rows, 6 samples, 0 skipped" in capsys.readouterr().err
    assert cli("ground", str(images / "phantom_0000.png"), "left lower lung opacity", "--model", "ldm",
               "--weights", str(tiny), "--embeddings", str(out / "tuned_embeddings.safetensors"),
               "--out", str(tmp_path / "g")) == 0
    assert cli("tune", "--manifest", str(manifest), "--images", str(images), "--out", str(out),
               "--weights", str(tiny), "--steps", "3", "--lr", "0.05", "--checkpoint-every", "2",
               "--no-install") == 0  # the same run again: continued from its checkpoint, nothing to do
    assert "continuing the run" in capsys.readouterr().err
    assert cli("tune", "--manifest", str(manifest), "--images", str(images), "--out", str(out),
               "--weights", str(tiny), "--steps", "3", "--lr", "0.01") == 2  # other settings: refused


def test_resume_is_exact(tiny, phantoms, tmp_path):
    straight = trainer(tiny, phantoms, tmp_path / "a")
    straight.train()
    first = trainer(tiny, phantoms, tmp_path / "b", steps=2)
    first.train()
    second = trainer(tiny, phantoms, tmp_path / "b", steps=4)
    assert second.resume() and second.step == 2
    second.train()
    a = load_file(str(tmp_path / "a" / "tuned_embeddings.safetensors"))["rows"]
    b = load_file(str(tmp_path / "b" / "tuned_embeddings.safetensors"))["rows"]
    assert torch.equal(a, b)
    assert [r["loss"] for r in straight.losses] == [r["loss"] for r in second.losses]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, phantoms, tmp_path):
    run = trainer(tiny, phantoms, tmp_path / "n", checkpoint_every=1)

    def poison(losses: Losses, step: int) -> Losses:
        return Losses(losses.total * float("nan"), losses.div, losses.loc) if step == 2 else losses

    with pytest.raises(CxrgError, match=r"loss became nan at step 3 .* last good checkpoint \(step 2\)"):
        run.train(loss_hook=poison)
    meta = json.loads((tmp_path / "n" / "checkpoint.json").read_text())
    kept = load_file(str(tmp_path / "n" / "checkpoint.safetensors"))["rows"]
    assert meta["step"] == 2 and torch.isfinite(kept).all()


def test_chunked_gradient_equals_one_batch_and_equals_the_naive_loop(tiny, phantoms, tmp_path):
    grads = []
    for chunk in (6, 4, 1):
        t = trainer(tiny, phantoms, tmp_path / f"c{chunk}", chunk=chunk)
        sample = t.manifest.samples[0]
        t.codebook.rows.grad = None
        t.sample_gradients(sample, step=0)
        grads.append(t.codebook.rows.grad.clone())
    naive = trainer(tiny, phantoms, tmp_path / "naive")
    naive.codebook.rows.grad = None
    naive_sample_gradients(naive, naive.manifest.samples[0], step=0)
    for grad in (*grads[1:], naive.codebook.rows.grad):
        assert (grad - grads[0]).abs().max() <= 1e-4 * grads[0].abs().max()  # relative error <= 1e-4
    assert grads[0].abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradient(tiny, phantoms, tmp_path):
    grads = []
    for checkpointing in (False, True):
        t = trainer(tiny, phantoms, tmp_path / f"k{checkpointing}", checkpointing=checkpointing)
        t.codebook.rows.grad = None
        t.sample_gradients(t.manifest.samples[1], step=0)
        grads.append(t.codebook.rows.grad.clone())
    assert (grads[1] - grads[0]).abs().max() <= 1e-5 * grads[0].abs().max()
    assert all("forward" not in block.__dict__ for block in t.ldm.unet.down_blocks)  # restored


def test_bfloat16_autocast_runs_and_agrees_roughly(tiny, phantoms, tmp_path):
    grads = []
    for autocast in ("none", "bfloat16"):
        t = trainer(tiny, phantoms, tmp_path / f"a{autocast}", autocast=autocast)
        t.codebook.rows.grad = None
        t.sample_gradients(t.manifest.samples[1], step=0)
        grads.append(t.codebook.rows.grad.clone().flatten())
    assert torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0) > 0.9


def test_trajectory_cache_is_reused_and_keyed_by_settings(tiny, phantoms, tmp_path):
    t = trainer(tiny, phantoms, tmp_path / "t", steps=8)
    t.train()
    assert t.cache.misses == 6 and t.cache.hits == 2  # 8 steps over 6 samples: 2 from the cache
    other = trainer(tiny, phantoms, tmp_path / "t2",
                    settings=HeatmapSettings(inference_steps=20, capture_steps=(6, 7), otsu=False))
    assert other.cache.model_key != t.cache.model_key


def test_sample_order_is_a_seeded_permutation_split_over_workers():
    order = [sample_for(step, 0, 1, 5, seed=3) for step in range(5)]
    assert sorted(order) == list(range(5))
    two = [sample_for(step, rank, 2, 6, seed=3) for step in range(3) for rank in (0, 1)]
    assert sorted(two) == list(range(6))  # 3 steps x 2 workers = one epoch, no sample twice


def test_manifest_problems_are_counted(tmp_path, phantoms):
    manifest, images = phantoms
    text = manifest.read_text().splitlines()
    text.append("bad1,bad1,missing.png,Lung Opacity,left lower,left lower lung opacity")
    text.append("bad2,bad2,phantom_0000.png,Pneumonia,,pneumonia")
    (tmp_path / "m.csv").write_text("\n".join(text) + "\n")
    data = read_manifest(tmp_path / "m.csv", images)
    assert data.rows == 8 and len(data.samples) == 6 and len(data.skipped) == 2
    assert "image not found" in data.skipped[0][1] and "names no location" in data.skipped[1][1]
    (tmp_path / "bad.csv").write_text("sample_id,prompt\n1,x\n")
    with pytest.raises(InputError, match="lacks column"):
        read_manifest(tmp_path / "bad.csv", images)


@pytest.mark.slow
def test_two_cpu_processes_tune_data_parallel(tiny, phantoms, tmp_path):
    """torchrun --nproc_per_node 2 (gloo): each step uses two samples and averages their gradients."""
    import os
    import shutil
    import subprocess
    import sys

    manifest, images = phantoms
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun is not None
    out = tmp_path / "dp"
    result = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "cxrg", "tune", "--manifest",
                             str(manifest), "--images", str(images), "--out", str(out),
                             "--weights", str(tiny), "--steps", "2", "--checkpoint-every", "1",
                             "--no-install"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len((out / "losses.csv").read_text().splitlines()) == 3
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["processes"] == 2
    ldm = load_ldm(tiny)
    start = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder)
    tuned, _ = Codebook.load(out / "tuned_embeddings.safetensors", fingerprint=ldm.fingerprint)
    assert torch.equal(tuned.rows[~start.anatomy], start.rows[~start.anatomy])
    assert not torch.equal(tuned.rows, start.rows)


@pytest.mark.slow
def test_learnability_on_phantoms(tmp_path):
    """Tuning moves attention towards the named location on held-out phantoms (tiny sharpened LDM)."""
    from cxrg.tuning.learnability import run_experiment

    result = run_experiment(tmp_path, steps=600, log=lambda *a: None)
    print("\n".join(result.lines()))
    # measured: 7.6 % on truly held-out images (the target of 20 % is not reached). The first wave's
    # 12.7 % was contaminated: the trainer cached images by sample_id, and train and test phantoms share
    # ids (phantom0...), so the "held-out" set was partly the training images (issue 14, item 7).
    assert result.loc_drop >= 0.05
    assert result.miou_tuned > result.miou_frozen  # measured: 0.043 against 0.032


def test_tune_progress_shows_off_a_terminal_and_quiet_silences_it(tiny, phantoms, tmp_path, capsys,
                                                                  monkeypatch):
    import cxrg.progress

    monkeypatch.setattr(cxrg.progress, "PLAIN_AFTER_S", 0.0)  # the tiny run ends in well under 2 s
    manifest, images = phantoms
    args = ["tune", "--manifest", str(manifest), "--images", str(images), "--weights", str(tiny),
            "--steps", "3", "--lr", "0.05", "--no-install"]
    assert cli(*args, "--out", str(tmp_path / "shown")) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tune: ")]
    assert lines and lines[-1].startswith("tune: 3/3 steps") and "loss " in lines[-1]
    assert cli(*args, "--out", str(tmp_path / "quiet"), "--quiet") == 0
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("tune: ")]
    cxrg.progress.quiet(False)


def test_the_protocol_sets_gs_normalisation_and_an_explicit_flag_wins(tiny, phantoms, tmp_path):
    manifest, images = phantoms
    args = ["tune", "--manifest", str(manifest), "--images", str(images), "--weights", str(tiny),
            "--steps", "1", "--lr", "0.05", "--no-install", "--quiet"]
    expected = {("paper", None): "density", ("cxrg", None): "peak", ("paper", "peak"): "peak"}
    for (protocol, flag), norm in expected.items():
        out = tmp_path / f"{protocol}-{flag}"
        assert cli(*args, "--out", str(out), "--protocol", protocol,
                   *(["--target-norm", flag] if flag else [])) == 0
        config = json.loads((out / "config.json").read_text())["config"]
        assert config["choices"]["g_normalisation"]["value"] == norm
        assert config["target_norm"] == norm  # what the trainer used
