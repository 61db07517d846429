"""The Python API (cxrg.api): light import, the same bits and the same errors as the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import run_cli
from PIL import Image

import cxrg
from cxrg.errors import CxrgError


def _same_outputs(a: Path, b: Path, name: str) -> None:
    """The CLI's three files in two folders are equal: the .npy and .png byte for byte, the JSON but for
    the output paths it lists."""
    for kind in ("heatmap.npy", "overlay.png"):
        assert (a / f"{name}.{kind}").read_bytes() == (b / f"{name}.{kind}").read_bytes(), kind
    left, right = (json.loads((d / f"{name}.json").read_text()) for d in (a, b))
    assert left.pop("outputs") != right.pop("outputs")
    assert left == right


def test_import_is_light_and_torch_free():
    code = ("import sys, time; t = time.perf_counter(); import cxrg; t = time.perf_counter() - t; "
            "print(t, 'torch' in sys.modules, callable(cxrg.ground))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert float(out[0]) < 0.5
    assert out[1:] == ["False", "True"]  # and reading cxrg.ground (cxrg.api) still imports no torch


def test_prior_equals_the_cli_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    demo = cxrg.demo_image()
    assert run_cli("ground", str(demo), "left pleural effusion", "--model", "prior", "--out", "cli") == 0
    g = cxrg.ground(demo, "left pleural effusion")
    assert g.prompt == "left pleural pleural effusion" and g.phrase == "left pleural effusion"
    assert g.heatmap.dtype == np.float32 and g.heatmap.shape == (1955, 1841)
    assert np.isnan(g.heatmap).any()  # outside the model's centre crop
    g.save("api")
    _same_outputs(tmp_path / "cli", tmp_path / "api", "RG1_UNCR.prior")
    summary = json.loads((tmp_path / "cli" / "RG1_UNCR.prior.json").read_text())
    assert g.peak == (summary["peak"]["x"], summary["peak"]["y"])
    assert g.box == tuple(summary["box"][k] for k in "xywh")
    assert g.token_maps is None  # the prior has no words


def test_every_kind_of_image_gives_the_same_heatmap(tmp_path):
    """A path, the array, a PIL image and a pydicom Dataset of the same picture ground alike."""
    import pydicom

    model = cxrg.load_model("prior")
    demo = cxrg.demo_image()
    from_path = model.ground(demo, "right lower consolidation")
    from_dataset = model.ground(pydicom.dcmread(demo), "right lower consolidation")
    assert np.array_equal(from_path.heatmap, from_dataset.heatmap, equal_nan=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(90, 120), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    maps = [model.ground(image, "left upper pneumothorax").heatmap
            for image in (tmp_path / "x.png", str(tmp_path / "x.png"), pixels, Image.fromarray(pixels))]
    assert all(np.array_equal(maps[0], m, equal_nan=True) for m in maps[1:])
    assert maps[0].shape == (90, 120)


def test_array_scales():
    from cxrg.images import as_image

    assert as_image(np.array([[0, 65535]], np.uint16))[0].tolist() == [[0.0, 1.0]]
    assert as_image(np.array([[0, 255]], np.uint8))[0].tolist() == [[0.0, 1.0]]
    assert as_image(np.array([[False, True]]))[0].tolist() == [[0.0, 1.0]]
    assert as_image(np.array([[0.25, 0.5]], np.float64))[0].tolist() == [[0.25, 0.5]]
    assert as_image(np.array([[0.0, 2.0]], np.float32))[0].tolist() == [[0.0, 1.0]]  # widened, not clipped
    for bad, words in ((np.zeros((4, 4, 3)), "colour"), (np.zeros((2, 4, 4)), "H x W"),
                       (np.array([[0.0, np.nan]]), "NaN"), ("nope.png", "not found"), (3, "int")):
        with pytest.raises(CxrgError, match=words):
            as_image(bad)


def test_errors_are_the_cli_ones(tmp_path, capsys):
    for args, call in (
            (["ground", str(tmp_path / "missing.png"), "left effusion", "--model", "prior"],
             lambda: cxrg.ground(tmp_path / "missing.png", "left effusion")),
            (["ground", str(cxrg.demo_image()), "left effusion", "--model", "no-such-model"],
             lambda: cxrg.ground(cxrg.demo_image(), "left effusion", model="no-such-model")),
            (["ground", str(cxrg.demo_image()), "banana", "--model", "prior"],
             lambda: cxrg.ground(cxrg.demo_image(), "banana")),
            (["ground", str(cxrg.demo_image()), "left effusion", "--model", "oracle"],
             lambda: cxrg.ground(cxrg.demo_image(), "left effusion", model="oracle"))):
        capsys.readouterr()
        code = run_cli(*args, "--out", str(tmp_path / "out"))
        line = capsys.readouterr().err.strip().splitlines()[-1]
        with pytest.raises(CxrgError) as caught:
            call()
        assert code == caught.value.exit_code != 0
        assert line == f"cxrg: error: {caught.value.one_line()}"


def test_options_are_checked_as_on_the_command_line():
    with pytest.raises(CxrgError, match="no_such_option"):
        cxrg.load_model("prior", no_such_option=1)


def test_organism_equals_the_cli_and_has_word_maps(tmp_path, monkeypatch):
    from cxrg.organism.weights import committed_weights

    monkeypatch.chdir(tmp_path)
    weights = committed_weights()
    pixels = np.zeros((128, 128), np.uint8)
    pixels[20:110, 10:60] = 90
    pixels[20:110, 68:118] = 90
    pixels[70:105, 15:55] = 200  # a bright patch low on the image's left: the patient's right base
    Image.fromarray(pixels).save(tmp_path / "phantom.png")
    args = ["ground", "phantom.png", "right lower consolidation", "--model", "ldm-frozen",
            "--weights", str(weights), "--out", "cli"]
    assert run_cli(*args) == 0
    model = cxrg.load_model("ldm-frozen", weights=weights)
    g = model.ground("phantom.png", "right lower consolidation")
    g.save("api")
    _same_outputs(tmp_path / "cli", tmp_path / "api", "phantom.ldm-frozen")
    assert g.settings["heatmap"]["window"]["capture_steps"] == [30, 60]
    words = g.token_maps
    assert list(words) == ["right", "lower", "consolidation"]
    assert all(m.shape == (128, 128) and m.dtype == np.float32 for m in words.values())
    # a one-word prompt's word map is its phrase map: the same tokens through the same pipeline
    single = model.ground(tmp_path / "phantom.png", "consolidation")
    assert np.array_equal(single.token_maps["consolidation"], single.heatmap, equal_nan=True)
    # several prompts on one image in one model call match one call each (batched matmuls: float noise)
    many = list(model.ground_many([pixels, pixels], ["right lower consolidation", "consolidation"],
                                  progress=False))
    assert [m.prompt for m in many] == ["right lower consolidation", "consolidation"]
    assert np.allclose(many[0].heatmap, g.heatmap, atol=1e-4, equal_nan=True)
    assert np.allclose(many[1].heatmap, single.heatmap, atol=1e-4, equal_nan=True)
    # a grouped Grounding carries what a single one does: word maps and the model's identity
    assert list(many[0].token_maps) == ["right", "lower", "consolidation"]
    assert many[0].weights_fingerprint == g.weights_fingerprint != ""


def test_ground_many_pairs_and_errors():
    model = cxrg.load_model("prior")
    images = [np.full((60, 80), 0.5, np.float32), np.full((70, 50), 0.5, np.float32)]
    out = list(model.ground_many(images, "left lower atelectasis", progress=False))
    assert [g.heatmap.shape for g in out] == [(60, 80), (70, 50)]
    assert np.array_equal(out[0].heatmap, model.ground(images[0], "left lower atelectasis").heatmap,
                          equal_nan=True)
    with pytest.raises(CxrgError, match="2 images but 1 phrases"):
        list(model.ground_many(images, ["left lower atelectasis"]))


def test_plot_and_notebook_picture():
    import matplotlib

    matplotlib.use("Agg")
    g = cxrg.ground(np.full((64, 48), 0.4, np.float32), "bilateral lower pleural effusion")
    ax = g.plot()
    assert ax.get_title() == g.caption()
    png = g._repr_png_()
    assert png.startswith(b"\x89PNG")


def test_caption_is_not_clipped_on_a_small_image():
    from cxrg.grounding import overlay_figure

    caption = "bilateral lower pleural effusion and right upper pneumothorax  (ldm-frozen)"
    fig = overlay_figure(np.zeros((32, 32), np.float32), np.random.default_rng(0).random((32, 32)), caption)
    fig.canvas.draw()
    text = fig.texts[0]
    box = text.get_window_extent()
    width, height = fig.canvas.get_width_height()
    assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height
    assert text.get_text().split() == caption.split()  # all of it, wrapped


def test_cxrg_bench_is_callable_after_the_package_is_imported():
    """`import cxrg.bench.metrics` makes cxrg.bench the package; calling it is still the API's bench."""
    import cxrg.bench.metrics  # noqa: F401

    with pytest.raises(CxrgError, match="unknown dataset 'nope'"):
        cxrg.bench("prior", "nope", annotations="a.csv", images=".")


def test_bench_and_read_run_equal_the_cli(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    common = ["--models", "oracle,prior", "--dataset", "ms-cxr", "--annotations", str(annotations),
              "--images", str(images), "--resamples", "200", "--no-report"]
    assert run_cli("bench", *common, "--out", str(tmp_path / "cli")) == 0
    run = cxrg.bench("oracle,prior", "ms-cxr", annotations, images, tmp_path / "api", resamples=200,
                     report=False)
    cli = cxrg.read_run(tmp_path / "cli")
    assert run.summary == cli.summary and run.summary
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in run.per_sample]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in cli.per_sample]
    oracle = [r for r in run.per_sample if r["model"] == "oracle" and r["status"] == "scored"]
    assert oracle and all(isinstance(r["miou"], float) for r in oracle)
    assert {r["model"] for r in run.summary} == {"oracle", "prior"}
    assert run.report().name == "report.html"
    assert run.plot() is not None
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(CxrgError, match="pandas"):
            run.to_pandas()
    else:
        assert len(run.to_pandas()) == len(run.per_sample)
    with pytest.raises(CxrgError, match="not a bench run folder"):
        cxrg.read_run(tmp_path)
