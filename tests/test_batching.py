"""Batching across images (issue 28): batched against per-image, SDPA against explicit attention, batched
trajectories against single ones, the harness's batches (rows, order, failures), the batch-size setting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cxrg_test_support import read_csv
from cxrg_test_support import run_cli as cli

from cxrg.bench.batching import (
    AUTO,
    choose_batch_size,
    configured_batch_size,
    parse_batch_size,
    resolve_batch_size,
)
from cxrg.config import load_config
from cxrg.errors import UsageError
from cxrg.ldm.attention import attention_path
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine, reference_maps
from cxrg.models.ldm import LdmFrozenModel
from cxrg.registry import Query

RNG = np.random.default_rng(3)
IMAGES = [RNG.random(shape).astype(np.float32) for shape in ((80, 100), (64, 64), (90, 70), (70, 90))]
PROMPTS = [["left lower pleural effusion", "cardiomegaly"], ["right pneumonia"],
           ["bilateral lower pneumonia", "left pneumothorax", "cardiomegaly"], ["right apical pneumothorax"]]
SHORT = HeatmapSettings(otsu=False, inference_steps=20, capture_steps=(6, 12))


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ------------------------------------------------------------------------------------ the engine


@pytest.mark.parametrize("invariant", [True, False])
def test_batched_trajectories_equal_single_ones_in_any_order(ldm, invariant):
    """Bit for bit with batch_invariant (the default); to float rounding without it."""
    engine = LdmEngine(ldm, SHORT, batch_invariant=invariant)
    pixels = [engine.model_input(image) for image in IMAGES]
    with torch.inference_mode():
        single = []
        for p in pixels:
            engine.forget()
            single.append(engine.trajectory(p))
        for order in ([0, 1, 2, 3], [3, 1, 0, 2], [2, 2, 0]):  # a repeated image is inverted once
            engine.forget()
            batched = engine.trajectories([pixels[k] for k in order])
            for k, trajectory in zip(order, batched, strict=True):
                assert sorted(trajectory) == sorted(single[k]) == sorted(SHORT.inversion_steps)
                for i, latent in trajectory.items():
                    assert latent.shape == single[k][i].shape
                    if invariant:
                        assert torch.equal(latent, single[k][i]), (order, k, i)
                    else:
                        assert rel(latent, single[k][i]) <= 1e-5, (order, k, i)
            assert batched[0] is not batched[1] or order[0] == order[1]


def test_the_inversion_runs_once_per_batch(ldm, monkeypatch):
    engine = LdmEngine(ldm, SHORT)
    calls = []
    original = engine.ldm.unet.forward
    monkeypatch.setattr(engine.ldm.unet, "forward", lambda *a, **k: calls.append(a[0].shape[0]) or
                        original(*a, **k))
    engine.maps_batch(IMAGES[:3], [["left pneumonia"]] * 3)
    inversion = [n for n in calls if n == 3]
    assert len(inversion) == max(SHORT.inversion_steps)  # one U-Net call per step for the three images
    calls.clear()
    engine.maps_batch(IMAGES[:3], [["right pneumonia"]] * 3)  # the same images: trajectories cached
    assert len(calls) == math.ceil(3 * len(SHORT.capture_steps) / engine.batch_size)


@pytest.mark.parametrize("attention,invariant", [("sdpa", True), ("explicit", True), ("sdpa", False)])
def test_maps_batch_equals_one_image_at_a_time_in_any_order(ldm, attention, invariant):
    engine = LdmEngine(ldm, SHORT, batch_size=7, attention=attention, batch_invariant=invariant)
    single = []
    for image, prompts in zip(IMAGES, PROMPTS, strict=True):
        engine.forget()
        single.append(engine.maps(image, prompts))
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [1, 3]):
        engine.forget()
        batched = engine.maps_batch([IMAGES[k] for k in order], [PROMPTS[k] for k in order])
        for k, maps in zip(order, batched, strict=True):
            assert len(maps) == len(PROMPTS[k])
            for got, want in zip(maps, single[k], strict=True):
                assert got.shape == want.shape == (64, 64)
                if invariant:
                    assert np.array_equal(got, want)  # the same bits, whatever shares the batch
                else:
                    assert rel(got, want) <= 1e-5
    heat = engine.heatmaps_batch(IMAGES[:2], [PROMPTS[0], []])
    assert [len(h) for h in heat] == [2, 0] and heat[0][0].shape == IMAGES[0].shape


def test_fast_path_with_sdpa_equals_the_explicit_reference(ldm):
    engine = LdmEngine(ldm, SHORT, attention="sdpa")
    fast = engine.maps(IMAGES[0], PROMPTS[0])
    slow = reference_maps(engine, IMAGES[0], PROMPTS[0])
    for f, s in zip(fast, slow, strict=True):
        assert rel(f, s) <= 1e-4


def test_sdpa_equals_explicit_attention_and_is_restored(ldm):
    unet, autoencoder = ldm.unet, ldm.autoencoder
    blocks = [m for m in (*unet.modules(), *autoencoder.modules()) if hasattr(m, "use_flash_attention")]
    before = [b.use_flash_attention for b in blocks]  # the loader puts the U-Net on SDPA, not the autoencoder
    assert len(blocks) > 10 and any(before) and not all(before)
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(3, 3, 8, 8, generator=gen)
    width = unet.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_k.in_features
    context = torch.randn(3, 77, width, generator=gen)
    times = torch.tensor([10, 400, 900])
    pixels = torch.rand(2, 1, 64, 64, generator=gen)
    with torch.inference_mode():
        with attention_path(unet, "explicit"), attention_path(autoencoder, "explicit"):
            explicit = unet(latent, timesteps=times, context=context)
            encoded = autoencoder.encode(pixels)[0]
        with attention_path(unet, "sdpa"), attention_path(autoencoder, "sdpa"):
            assert all(b.use_flash_attention for b in blocks)
            fused = unet(latent, timesteps=times, context=context)
            encoded_fused = autoencoder.encode(pixels)[0]
    assert [b.use_flash_attention for b in blocks] == before  # restored
    assert rel(fused, explicit) <= 1e-5 and not torch.equal(fused, explicit)  # another kernel, same values
    assert rel(encoded_fused, encoded) <= 1e-5
    with pytest.raises(UsageError, match="attention path"):
        with attention_path(unet, "flash"):
            pass


def test_blocks_the_fused_path_cannot_run_exactly_are_left_explicit():
    from monai.networks.blocks import CrossAttentionBlock

    block = CrossAttentionBlock(hidden_size=16, num_heads=2, dropout_rate=0.1)
    causal = CrossAttentionBlock(hidden_size=16, num_heads=2, causal=True, sequence_length=4)
    module = torch.nn.ModuleList([block, causal, CrossAttentionBlock(hidden_size=16, num_heads=2)])
    with attention_path(module, "sdpa"):
        assert [m.use_flash_attention for m in module] == [False, False, True]


# ------------------------------------------------------------------------------------ the model


def test_ldm_model_batches_queries_of_several_images(tiny):
    model = LdmFrozenModel()
    model.load(tiny, options=model.Options(inference_steps=20, capture_steps=(6, 12)))
    queries = [Query(IMAGES[0], "left pneumonia"), Query(IMAGES[1], "cardiomegaly"),
               Query(IMAGES[0], "right pneumonia"), Query(IMAGES[2], "left pneumothorax")]
    together = model.heatmaps(queries)
    for query, heat in zip(queries, together, strict=True):
        model.engine.forget()
        alone = model.heatmap(query)
        assert heat.shape == query.image.shape
        assert np.array_equal(heat, alone, equal_nan=True)


# ------------------------------------------------------------------------------------ bench


def bench(tiny, ms_cxr, out: Path, *extra: str) -> int:
    annotations, images = ms_cxr
    return cli("bench", "--models", "ldm-frozen,oracle", "--dataset", "ms-cxr", "--annotations",
               str(annotations), "--images", str(images), "--weights", str(tiny), "--out", str(out),
               "--resamples", "200", "-o", "inference_steps=20", "-o", "capture_steps=6,12", "--no-report",
               *extra)


def assert_same_numbers(a, b, path: str = "") -> None:
    """Equal structure and text; numbers equal within 1e-5 relative (float rounding of a batched U-Net
    without batch_invariant), or 1e-6 absolute for a mean of O(1) signed values (CNR) that nearly cancels."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_numbers(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_numbers(x, y, f"{path}[{k}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6), path
    else:
        assert a == b, path


def test_bench_batch_size_gives_the_rows_and_summary_of_one_image_at_a_time(tiny, ms_cxr, tmp_path, capsys):
    assert bench(tiny, ms_cxr, tmp_path / "one", "--batch-size", "1") == 0
    assert bench(tiny, ms_cxr, tmp_path / "four", "--batch-size", "4") == 0
    assert "batch size: 4 images per model call" in capsys.readouterr().err
    one, four = read_csv(tmp_path / "one" / "per_sample.csv"), read_csv(tmp_path / "four" / "per_sample.csv")
    assert [(r["model"], r["sample_id"]) for r in one] == [(r["model"], r["sample_id"]) for r in four]
    assert len(one) == 16
    for a, b in zip(one, four, strict=True):
        for column in ("status", "error", "fingerprint", "prompt", "category"):
            assert a[column] == b[column]
        assert (a["cnr"], a["miou"]) == (b["cnr"], b["miou"])  # batch_invariant (default): bit for bit
    summary = "summary.json"
    assert (tmp_path / "one" / summary).read_bytes() == (tmp_path / "four" / summary).read_bytes()
    config = json.loads((tmp_path / "four" / "config.json").read_text())["config"]
    assert config["batch_size"]["used"] == 4 and config["batch_size"]["source"] == "command line"
    # resume with another batch size: nothing recomputed (fingerprints do not depend on it)
    assert bench(tiny, ms_cxr, tmp_path / "four", "--batch-size", "2") == 0
    assert read_csv(tmp_path / "four" / "per_sample.csv") == four


def test_without_batch_invariance_the_summary_is_equal_to_rounding(tiny, ms_cxr, tmp_path):
    fast = ("-o", "ldm-frozen.batch_invariant=false")
    assert bench(tiny, ms_cxr, tmp_path / "one", "--batch-size", "1", *fast) == 0
    assert bench(tiny, ms_cxr, tmp_path / "four", "--batch-size", "4", *fast) == 0
    assert_same_numbers(json.loads((tmp_path / "one" / "summary.json").read_text()),
                        json.loads((tmp_path / "four" / "summary.json").read_text()))


def test_a_failing_image_in_a_batch_fails_alone(tiny, ms_cxr, tmp_path):
    annotations, images = ms_cxr
    broken = next(images.rglob("d2.jpg"))
    broken.write_bytes(b"not a jpeg")
    assert bench(tiny, ms_cxr, tmp_path / "b", "--batch-size", "8") == 0
    rows = read_csv(tmp_path / "b" / "per_sample.csv")
    failed = {(r["model"], r["sample_id"]) for r in rows if r["status"] == "failed"}
    d2 = {r["sample_id"] for r in rows if r["sample_id"].startswith("d2")}
    assert failed == {(m, s) for m in ("ldm-frozen", "oracle") for s in d2} and d2
    assert all(r["status"] == "scored" for r in rows if not r["sample_id"].startswith("d2"))


def test_a_model_call_that_fails_for_one_sample_fails_only_that_sample(ms_cxr, tmp_path):
    from cxrg.bench.datasets import read_dataset
    from cxrg.bench.harness import run_benchmark
    from cxrg.runs import RunDir

    class Picky:
        """Batched calls raise if any prompt mentions pneumothorax; single calls raise only for that one."""

        card = LdmFrozenModel.card
        calls: list[int] = []

        def heatmap(self, query):
            if "pneumothorax" in query.prompt:
                raise ValueError("no pneumothorax here")
            return np.full(query.image.shape, 0.5, dtype=np.float32) + np.eye(*query.image.shape)

        def heatmaps(self, queries):
            self.calls.append(len(queries))
            return [self.heatmap(q) for q in queries]

    annotations, images = ms_cxr
    data = read_dataset("ms-cxr", annotations, images)
    run = RunDir(tmp_path / "r", "bench", {})
    try:
        result = run_benchmark({"picky": Picky()}, data, run, 200, 0, batch_size=8)
    finally:
        run.close()
    statuses = {sid: row["status"] for (_, sid), row in result.rows.items()}
    bad = {s.sample_id for s in data.samples if "pneumothorax" in s.prompt}
    assert bad and all(statuses[s] == "failed" for s in bad)
    assert all(statuses[s.sample_id] == "scored" for s in data.samples if s.sample_id not in bad)
    assert Picky.calls[0] == len(data.samples)  # one call for all images first
    assert "ValueError: no pneumothorax here" in result.rows[("picky", sorted(bad)[0])]["error"]


# ------------------------------------------------------------------------------------ the setting


def test_batch_size_setting(tmp_path, monkeypatch):
    assert parse_batch_size("4") == 4 and parse_batch_size("Auto") == AUTO and parse_batch_size(2) == 2
    for bad in ("0", "-1", "two", 1.5, True):
        with pytest.raises(UsageError, match="whole number"):
            parse_batch_size(bad)
    monkeypatch.chdir(tmp_path)
    assert configured_batch_size(load_config(), None, "cpu") == (AUTO, "default")
    (tmp_path / "cxrg.toml").write_text("[bench.batch_size]\ncpu = 3\ncuda = \"auto\"\n")
    cfg = load_config()
    assert configured_batch_size(cfg, None, "cpu") == (3, str(tmp_path / "cxrg.toml"))
    assert configured_batch_size(cfg, None, "cuda:1")[0] == AUTO
    assert configured_batch_size(cfg, "5", "cpu") == (5, "command line")
    assert configured_batch_size(cfg, None, "mps")[0] == AUTO
    (tmp_path / "cxrg.toml").write_text("[bench]\nbatch_size = 0\n")
    with pytest.raises(UsageError, match=r"\[bench\] batch_size"):
        configured_batch_size(load_config(), None, "cpu")
    assert resolve_batch_size(AUTO, {}, "cpu") == (1, "auto: 1 (no model batches images)")
    assert resolve_batch_size(6, {}, "cuda") == (6, "as set")


def test_automatic_choice_fits_the_free_memory():
    gib = 2 ** 30
    assert choose_batch_size(40 * gib, 2 * gib) == 16  # 80 % of 40 GiB / 2 GiB
    assert choose_batch_size(1 * gib, 2 * gib) == 1  # never below one
    assert choose_batch_size(1000 * gib, 1 * gib) == 32  # capped
    assert choose_batch_size(10 * gib, 0) == 32


def test_bench_rejects_a_bad_batch_size(tiny, ms_cxr, tmp_path, capsys):
    assert bench(tiny, ms_cxr, tmp_path / "b", "--batch-size", "0") == 2
    err = capsys.readouterr().err
    assert "--batch-size must be a whole number >= 1 or auto" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ tuning


def test_precomputed_trajectories_equal_single_ones(tiny, ldm, tmp_path):
    from cxrg.tuning.trajectories import TrajectoryCache

    engine = LdmEngine(ldm, SHORT)
    pixels = [engine.model_input(image) for image in IMAGES]
    single = TrajectoryCache(engine, tmp_path / "single", batch_size=1)
    want = [single.latents(p) for p in pixels]
    batched = TrajectoryCache(engine, tmp_path / "batched", batch_size=3)
    assert batched.precompute([pixels[:3], pixels[3:]]) == 4
    assert batched.precompute([pixels[:3]]) == 0  # all stored: nothing computed
    got = [batched.latents(p) for p in pixels]
    assert (batched.hits, batched.misses) == (0, 4)  # computed once, read back uncounted
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and rel(a, b) <= 1e-5
    assert [batched.latents(p) for p in pixels[:1]] and batched.hits == 1


# ------------------------------------------------------------------------------------ ground over a folder


def test_ground_over_a_folder_in_batches_equals_one_image_at_a_time(tiny, tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for k, image in enumerate(IMAGES[:3]):
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"im{k}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    outputs = {}
    for n in ("1", "3"):
        code = cli("ground", str(folder), "left lower pleural effusion", "--model", "ldm-frozen", "--weights",
                   str(tiny), "--out", str(tmp_path / n), "--batch-size", n, "-o", "inference_steps=20",
                   "-o", "capture_steps=6,12")
        err = capsys.readouterr().err
        assert code == 1 and "3 of 4 images grounded, 1 skipped" in err and "broken.png" in err
        outputs[n] = {k: np.load(tmp_path / n / f"im{k}.ldm-frozen.heatmap.npy") for k in range(3)}
    for k in range(3):
        a, b = outputs["1"][k], outputs["3"][k]
        assert a.shape == IMAGES[k].shape and np.array_equal(np.isnan(a), np.isnan(b))
        assert rel(np.nan_to_num(b), np.nan_to_num(a)) <= 1e-5


# ------------------------------------------------------------------------------------ classify


def test_error_maps_of_several_images_equal_one_at_a_time(ldm):
    from cxrg.classify.diffusion import DrawSettings, draw_noise, error_maps, error_maps_batch

    engine = LdmEngine(ldm, SHORT)
    with torch.inference_mode():
        latents = engine.encode_image(torch.cat([engine.model_input(im) for im in IMAGES[:3]]))
        contexts, _ = engine.contexts(["no finding", "pneumothorax"])
    settings = DrawSettings(draws=5, batch_size=4)
    draws = [draw_noise(0, f"image{n}", settings, tuple(latents.shape[1:])) for n in range(3)]
    kind = ldm.architecture.scheduler["prediction_type"]
    with torch.inference_mode():
        together = error_maps_batch(ldm.unet, latents, contexts, [t for t, _ in draws], [e for _, e in draws],
                                    ldm.alphas, kind, 7)
        for n in range(3):
            alone = error_maps(ldm.unet, latents[n:n + 1], contexts, *draws[n], ldm.alphas, kind, 4)
            assert together[n].shape == alone.shape == (2, *latents.shape[-2:])
            assert rel(together[n], alone) <= 1e-5


def test_classify_images_per_batch_gives_the_rows_of_one_at_a_time(tiny, tmp_path, monkeypatch):
    import test_classify as tc

    from cxrg.classify import heatmaps

    monkeypatch.setattr(heatmaps, "HEATMAP_SETTINGS", tc.SMALL)
    positives, images, negatives, healthy = tc.write_cohort(tmp_path)
    rows = {}
    for n in ("1", "3"):
        out = tmp_path / f"run{n}"
        assert cli("classify", "--positives", str(positives), "--images", str(images), "--negatives",
                   str(negatives), "--negatives-images", str(healthy), "--weights", str(tiny), "--out",
                   str(out), "--draws", "3", "--resamples", "200", "--batch-size", "5",
                   "--strategies", "none,location", "--images-per-batch", n) == 0
        rows[n] = read_csv(out / "scores.csv")
    assert [(r["unit"], r["prompt"], r["strategy"], r["error"]) for r in rows["1"]] == \
        [(r["unit"], r["prompt"], r["strategy"], r["error"]) for r in rows["3"]]
    assert sum(1 for r in rows["3"] if r["error"]) == 10  # the broken positive and negative: alone
    for a, b in zip(rows["1"], rows["3"], strict=True):
        for column in ("error_healthy", "error_pathology", "miou"):
            if a[column]:
                assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-5)


def test_sharded_bench_in_batches_equals_one_process_one_image_at_a_time(ms_cxr, tmp_path, monkeypatch):
    import test_shards as ts

    one = tmp_path / "one"
    assert cli("bench", *ts.bench_args(ms_cxr, one), "--batch-size", "1") == 0
    out = tmp_path / "two"
    ts.play_ranks(monkeypatch, 2, lambda: cli("bench", *ts.bench_args(ms_cxr, out), "--batch-size", "3"))
    assert ts.rows_of(out / "per_sample.csv") == ts.rows_of(one / "per_sample.csv")  # fingerprints too
    assert (out / "summary.json").read_text() == (one / "summary.json").read_text()  # no U-Net: bit for bit
    assert not (out / "shards").exists()
