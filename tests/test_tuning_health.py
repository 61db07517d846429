"""Tuning defects of issue 23 and the tuner's health report: the heatmap of a two-location prompt is the
map the losses optimise, manifest prompts are never silently changed, the G normalisation, the probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cxrg.anatomy.lut import Lut
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine
from cxrg.ldm.loading import load_ldm
from cxrg.ldm.text import tokenize
from cxrg.runs import RunDir
from cxrg.tuning.data import Manifest, TuningSample, read_manifest
from cxrg.tuning.losses import scale_gaussian, spatial_mean
from cxrg.tuning.trainer import Trainer, TuneConfig

QUICK = HeatmapSettings(inference_steps=20, capture_steps=tuple(range(6, 12)), otsu=False)
TWO = "left apical and right lower pneumonia"


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "a.png"
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((96, 80)) * 255).astype(np.uint8)).save(path)
    return path


def one_sample_trainer(tiny, image: Path, prompt: str, out: Path, **changes) -> Trainer:
    from cxrg.vocab import prompt_locations

    sample = TuningSample("s", image, prompt, prompt_locations(prompt))
    config = TuneConfig(**{"steps": 1, "chunk": 6, "settings": QUICK, **changes})
    return Trainer(load_ldm(tiny), Lut.default(), Manifest([sample], [], 1), config,
                   RunDir(out, "tune", {"test": True}), out / "cache")


def test_the_ldm_heatmap_of_a_two_location_prompt_is_the_trainers_a_sp(tiny, image, tmp_path):
    trainer = one_sample_trainer(tiny, image, TWO, tmp_path / "t")
    with torch.no_grad():  # the rows moved off the table, as after tuning
        trainer.codebook.rows.add_(0.3 * torch.randn(trainer.codebook.rows.shape,
                                                     generator=torch.Generator().manual_seed(0)))
        a_sp = spatial_mean(trainer.token_maps(trainer.manifest.samples[0]))  # (T, L, D)
    engine = LdmEngine(trainer.ldm, QUICK, trainer.codebook)
    with torch.inference_mode():
        trajectory = engine.trajectory(trainer.pixels(trainer.manifest.samples[0]))
        context, spans = engine.contexts([TWO])
        maps = engine.captured_maps(trajectory, context, spans)  # (1, T*L, h, w): step-major
    ids, _ = tokenize(trainer.ldm.tokenizer, [TWO])
    and_id = trainer.ldm.tokenizer("and", add_special_tokens=False).input_ids[0]
    assert spans[0].binding == (ids[0].tolist().index(and_id),)  # "and" is special, as in the losses
    heat = maps[0].reshape(a_sp.shape)
    assert (heat - a_sp).abs().max() <= 1e-5 * a_sp.abs().max()
    # and the maps of the span with "and" differ: what cxrg 0.2 averaged
    with torch.inference_mode():
        from cxrg.ldm.text import TokenSpan
        with_and = engine.captured_maps(trajectory, context, [TokenSpan(spans[0].start, spans[0].stop)])
    assert (with_and[0].reshape(a_sp.shape) - a_sp).abs().max() > 1e-3 * a_sp.abs().max()


def test_manifest_prompts_in_the_grammar_are_kept_as_written_and_counted(tmp_path):
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("sample_id,image_path,prompt\n"
                        "a,a.png,left pleural edema\n"          # canonical reading drops 'pleural'
                        "b,a.png,right base and left base atelectasis\n"  # read as 'bibasilar'
                        "c,a.png,left lower pneumonia\n"        # canonical already
                        "d,a.png,Left lower lobe pneumonia\n")  # free text: read
    data = read_manifest(manifest, tmp_path)
    assert [(s.prompt, s.locations) for s in data.samples] == [
        ("left pleural edema", ("left pleural",)),
        ("right base and left base atelectasis", ("right base", "left base")),
        ("left lower pneumonia", ("left lower",)), ("left lower pneumonia", ("left lower",))]
    assert data.kept == [("a", "left pleural edema", "left edema"),
                         ("b", "right base and left base atelectasis", "bibasilar atelectasis")]
    assert data.read == [("d", "Left lower lobe pneumonia", "left lower pneumonia")]


def test_g_normalisation():
    g = torch.tensor([0.0, 0.5, 1.0, 0.5])
    assert torch.equal(scale_gaussian(g, "peak"), g)
    assert torch.allclose(scale_gaussian(g, "density"), torch.tensor([0.0, 0.25, 0.5, 0.25]))
    with pytest.raises(ValueError, match="target_norm"):
        scale_gaussian(g, "max")


def test_a_one_location_prompt_averages_its_whole_span(tiny):
    """The fix only drops "and": a one-location prompt's map is the span mean as before."""
    ldm = load_ldm(tiny)
    _, spans = tokenize(ldm.tokenizer, ["left lower pneumonia", "left apical and right pneumothorax"])
    assert spans[0].binding == () and spans[0].positions() == list(range(spans[0].start, spans[0].stop))
    assert len(spans[1].binding) == 1 and len(spans[1].positions()) == spans[1].stop - spans[1].start - 1


def manifest_trainer(tiny, phantoms, out: Path, **changes) -> Trainer:
    manifest, images = phantoms
    config = TuneConfig(**{"steps": 4, "checkpoint_every": 4, "chunk": 6, "settings": QUICK, "probe": 1,
                           "probe_every": 2, "lr": 0.05, **changes})
    return Trainer(load_ldm(tiny), Lut.default(), read_manifest(manifest, images), config,
                   RunDir(out, "tune", {"test": True}), out / "cache")


def test_probe_is_held_out_and_records_unjittered_losses_and_the_gradient_ratio(tiny, phantoms, tmp_path):
    from cxrg.tuning.losses import tuning_losses

    t = manifest_trainer(tiny, phantoms, tmp_path / "p", div_weight=0.5)
    (probe,) = t.probe_samples
    assert len(t.train_samples) == 5 and probe not in t.train_samples
    # the record before training, by hand: separate backward passes of w L_div and L_loc
    maps = t.token_maps(probe)
    g = torch.from_numpy(Lut.default().render(probe.locations, shape=int(maps.shape[2] ** 0.5))).reshape(-1)
    losses = tuning_losses(maps, g, div_weight=0.5)
    mask = t.codebook.gradient_mask()
    (0.5 * losses.div).backward(retain_graph=True)
    g_div = (t.codebook.rows.grad * mask).norm()
    t.codebook.rows.grad = None
    losses.loc.backward()
    g_loc = (t.codebook.rows.grad * mask).norm()
    t.codebook.rows.grad = None
    t.train()
    rows = t.losses
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert probe.sample_id not in {r.get("sample_id") for r in rows}
    assert [bool(r.get("probe_l_loc")) for r in rows] == [True, False, True, False, True]
    assert float(rows[0]["probe_l_loc"]) == pytest.approx(float(losses.loc.detach()), rel=1e-5)
    assert float(rows[0]["probe_l_div"]) == pytest.approx(float(losses.div.detach()), rel=1e-5)
    assert float(rows[0]["grad_ratio"]) == pytest.approx(float(g_div / g_loc), rel=1e-4)
    assert float(rows[0]["grad_ratio"]) > 0
    header = (tmp_path / "p" / "losses.csv").read_text().splitlines()[0]
    assert header.endswith("probe_l_loc,probe_l_div,grad_ratio")


def test_a_stalled_probe_warns_once(tiny, phantoms, tmp_path):
    t = manifest_trainer(tiny, phantoms, tmp_path / "w", lr=0.0, probe_patience=2)  # the rows cannot move
    said: list[str] = []
    t.notify = said.append
    t.train()
    warnings = [line for line in said if line.startswith("warning:")]
    assert len(warnings) == 1 and "probe L_loc has not fallen after 2 steps" in warnings[0]
    assert "--div-weight 0" in warnings[0]
    assert "probe L_loc has not fallen" in (tmp_path / "w" / "log.txt").read_text()


def test_tensorboard_tracker_receives_the_losses(tiny, phantoms, tmp_path):
    pytest.importorskip("tensorboard")
    from cxrg_test_support import run_cli as cli
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    manifest, images = phantoms
    out = tmp_path / "run"
    assert cli("tune", "--manifest", str(manifest), "--images", str(images), "--out", str(out),
               "--weights", str(tiny), "--steps", "3", "--lr", "0.05", "--probe-every", "2",
               "--log-with", "tensorboard", "--no-install") == 0
    files = list((out / "tracking").rglob("events.out.tfevents.*"))
    assert files
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in files:
        events = EventAccumulator(str(path.parent))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    assert sorted(step for step, _ in scalars["loss"]) == [1, 2, 3]
    assert sorted(step for step, _ in scalars["probe_l_loc"]) == [0, 2, 3]
    import csv

    rows = {int(r["step"]): r for r in csv.DictReader((out / "losses.csv").open())}
    assert dict(scalars["l_loc"])[2] == pytest.approx(float(rows[2]["l_loc"]), rel=1e-6)


def test_unknown_tracker_is_a_usage_error(tiny, phantoms, tmp_path, capsys):
    from cxrg_test_support import run_cli as cli

    manifest, images = phantoms
    assert cli("tune", "--manifest", str(manifest), "--images", str(images), "--out", str(tmp_path / "r"),
               "--weights", str(tiny), "--steps", "1", "--log-with", "wandb") == 2
    assert "unknown --log-with 'wandb'" in capsys.readouterr().err


def test_side_score_by_hand():
    from cxrg.tuning.oracle import side_score

    g = torch.zeros(4, 4)
    g[2:, 2:] = 1.0  # lower image-right: the patient's left lower zone
    maps = g.reshape(1, 1, 16, 1).repeat(2, 3, 1, 2)  # (T, L, D, S): every token on G
    score = side_score(maps, g.reshape(-1), "left")
    assert score.cos_g == pytest.approx(1.0) and score.cos_mirror == pytest.approx(0.0)
    assert score.named_side == pytest.approx(1.0) and score.margin == pytest.approx(1.0)
    flat = torch.ones(1, 1, 16, 1)
    score = side_score(flat, g.reshape(-1), "right")
    assert score.cos_g == pytest.approx(score.cos_mirror) == pytest.approx(0.5)
    assert score.named_side == pytest.approx(0.5) and score.margin == pytest.approx(0.0)
    from cxrg.tuning.oracle import OracleResult

    good = side_score(maps, g.reshape(-1), "left")
    symmetric = side_score(maps + maps.flip(2), g.reshape(-1), "left")  # flip(2) reverses D: a 180 turn
    assert OracleResult("p", 1, score, good, 0.5, 0.4, 0.0).passes()
    assert not OracleResult("p", 1, good, score, 0.5, 0.4, 0.0).passes()
    assert symmetric.named_side == pytest.approx(0.5)


def test_row_oracle_runs_on_one_image_and_leaves_the_model_alone(tiny, image):
    from cxrg.tuning.oracle import row_oracle

    ldm = load_ldm(tiny)
    table = ldm.text_encoder.get_input_embeddings().weight.clone()
    result = row_oracle(ldm, Lut.default(), image, "left lower pneumonia",
                        TuneConfig(steps=2, lr=0.05, chunk=6, settings=QUICK, div_weight=0.0))
    assert result.steps == 2 and result.l_loc_after != result.l_loc_before
    assert torch.equal(ldm.text_encoder.get_input_embeddings().weight, table)
    assert "cos(A_sp, G)" in result.line()
    with pytest.raises(ValueError, match="one-sided"):
        row_oracle(ldm, Lut.default(), image, "bibasilar pneumonia", TuneConfig(steps=1, settings=QUICK))


def test_div_pairs_across_phrases_by_hand(tiny):
    from cxrg.tuning.losses import diversity_loss
    from cxrg.tuning.trainer import phrase_groups

    ldm = load_ldm(tiny)
    groups = phrase_groups(ldm.tokenizer, "left lower and right apical pneumonia")
    ap = len(ldm.tokenizer("apical", add_special_tokens=False).input_ids)
    assert groups == [0, 0] + [1] * (1 + ap) + [2]
    # three tokens: 0 and 1 one phrase with the same map, 2 orthogonal to both
    maps = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).reshape(1, 1, 2, 3)
    assert float(diversity_loss(maps)) == pytest.approx(2 / 6)  # pairs (0,1), (1,0) have cos 1
    assert float(diversity_loss(maps, [0, 0, 1])) == pytest.approx(0.0)  # only cross-phrase pairs: cos 0
    assert float(diversity_loss(maps, [0, 0, 0])) == 0.0  # no pair left
