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
