"""Issue 14: runs you can trust. Each test is a case that lost data or gave wrong numbers before (or a
robustness case); docs/reliability.md lists what they guarantee."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import MS_CXR_HEADER, make_distribution, mimic_path, read_csv, run_cli
from PIL import Image

from cxrg.errors import CxrgError, InputError, UsageError
from cxrg.runs import RunDir, check_complete, mark_complete, mark_incomplete

ROOT = Path(__file__).resolve().parents[1]


def bench(annotations: Path, images: Path, out: Path, *extra: str, models: str = "oracle") -> int:
    return run_cli("bench", "--models", models, "--dataset", "ms-cxr", "--annotations", str(annotations),
                   "--images", str(images), "--out", str(out), "--resamples", "100", "--no-report", *extra)


def rows_by_id(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["model"], r["sample_id"]): r for r in read_csv(out / "per_sample.csv")}


def cxrg_process(*args: str, site: Path | None = None, env: dict | None = None, **kw) -> subprocess.Popen:
    environment = dict(os.environ)
    if site is not None:
        environment["PYTHONPATH"] = str(site)
        environment.pop("CXRG_LOAD_PLUGINS", None)
    environment.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "cxrg", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environment, **kw)


PLUGINS = '''
import time
import numpy as np
from cxrg.registry import ModelCard

def card(name):
    return ModelCard(name=name, version="1", licence="MIT", description="test plugin")

def blob(query):
    h, w = query.image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((xx - w / 3) ** 2 + (yy - h / 2) ** 2) / (2 * (w / 5) ** 2)).astype(np.float32)

class Impostor:  # registered as 'impostor' but its card says 'oracle'
    card = card("oracle")
    def load(self, weights_dir=None, device="cpu"): pass
    def heatmap(self, query): return blob(query)

class ExitsInLoad:
    card = card("exits-in-load")
    def load(self, weights_dir=None, device="cpu"): raise SystemExit(3)
    def heatmap(self, query): return blob(query)

class ExitsInHeatmap:
    card = card("exits-in-heatmap")
    def load(self, weights_dir=None, device="cpu"): pass
    def heatmap(self, query): raise SystemExit("bye")

class InterruptsInHeatmap:
    card = card("interrupts")
    def load(self, weights_dir=None, device="cpu"): pass
    def heatmap(self, query): raise KeyboardInterrupt

class Slow:
    card = card("slow")
    def load(self, weights_dir=None, device="cpu"): pass
    def heatmap(self, query):
        time.sleep(0.6)
        return blob(query)
'''
EXITS_AT_IMPORT = "raise SystemExit('plugin gave up at import')\n"


@pytest.fixture
def plugins(tmp_path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "evil", {
        "impostor": "evilmod:Impostor", "exits-in-load": "evilmod:ExitsInLoad",
        "exits-in-heatmap": "evilmod:ExitsInHeatmap", "interrupts": "evilmod:InterruptsInHeatmap",
        "slow": "evilmod:Slow", "exits-at-import": "exitmod:M"},
        {"evilmod": PLUGINS, "exitmod": EXITS_AT_IMPORT})
    return site


# ------------------------------------------------------------------------------- 1. stale resume

def test_changed_box_recomputes_only_that_row_and_equals_a_fresh_run(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    assert bench(annotations, images, out) == 0
    before = rows_by_id(out)
    text = annotations.read_text().replace("d4,Pleural Effusion,left pleural effusion,"
                                           f"{mimic_path('d4')},70,70,40,35",
                                           f"d4,Pleural Effusion,left pleural effusion,{mimic_path('d4')},"
                                           "10,10,40,35")
    assert text != annotations.read_text()
    annotations.write_text(text)
    capsys.readouterr()
    assert bench(annotations, images, out) == 0
    assert "1 finished (model, sample) pairs recomputed" in capsys.readouterr().err
    after = rows_by_id(out)
    assert bench(annotations, images, tmp_path / "fresh") == 0
    fresh = rows_by_id(tmp_path / "fresh")
    changed = [key for key in after if after[key]["cnr"] != before[key]["cnr"]]
    assert changed == [("oracle", "d4:0")]
    for key, row in after.items():
        assert (row["cnr"], row["miou"], row["prompt"]) == (fresh[key]["cnr"], fresh[key]["miou"],
                                                            fresh[key]["prompt"])
        if key != ("oracle", "d4:0"):
            assert row["seconds"] == before[key]["seconds"]  # kept, not recomputed


def test_other_images_root_recomputes_every_row(ms_cxr, tmp_path, capsys):
    import shutil

    annotations, images = ms_cxr
    out = tmp_path / "run"
    assert bench(annotations, images, out) == 0
    other = tmp_path / "other-images"
    shutil.copytree(images, other)
    for path in other.rglob("*.jpg"):  # other pixels, same names
        Image.fromarray(np.full(Image.open(path).size[::-1], 7, np.uint8)).save(path)
    capsys.readouterr()
    assert bench(annotations, other, out) == 0
    err = capsys.readouterr().err
    assert "8 finished (model, sample) pairs recomputed" in err
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["fingerprints"]["images"] == str(other.resolve())
    assert set(config["fingerprints"]) >= {"annotations", "images", "models", "metrics", "cxrg"}


def test_model_fingerprint_follows_its_weight_files(tmp_path):
    from cxrg.bench.runner import model_fingerprints
    from cxrg.registry import ModelCard, WeightFile

    class Weighted:
        card = ModelCard(name="w", version="1", licence="MIT", description="",
                         weights=(WeightFile("w.bin", "weights", "make them"),))

    (tmp_path / "w.bin").write_bytes(b"one")
    first = model_fingerprints({"w": Weighted()}, {"w": {}}, {}, tmp_path)
    assert model_fingerprints({"w": Weighted()}, {"w": {}}, {}, tmp_path) == first
    (tmp_path / "w.bin").write_bytes(b"other weights")
    assert model_fingerprints({"w": Weighted()}, {"w": {}}, {}, tmp_path) != first
    assert model_fingerprints({"w": Weighted()}, {"w": {"dtype": "bfloat16"}}, {}, tmp_path) != first


def test_restart_drops_previous_rows(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    assert bench(annotations, images, out) == 0
    capsys.readouterr()
    assert bench(annotations, images, out, "--restart") == 0
    assert "--restart: previous results" in capsys.readouterr().err
    assert len(read_csv(out / "per_sample.csv")) == 8


# ------------------------------------------------------------------------------- 2. one writer per run

HOLDER = """
import sys, time
from cxrg.runs import RunDir
run = RunDir(sys.argv[1], "bench", {}, lock=True)
print("locked", flush=True)
time.sleep(120)
"""


def test_second_run_into_a_locked_folder_is_refused_and_a_killed_holder_leaves_no_stale_lock(ms_cxr, tmp_path,
                                                                                                capsys):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert bench(annotations, images, out) == 2
        err = capsys.readouterr().err
        assert f"another cxrg run is writing to {out} (process {holder.pid})" in err
        assert len(err.strip().splitlines()) == 1 and not (out / "per_sample.csv").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert bench(annotations, images, out) == 0  # the kernel dropped the dead process's lock
    assert len(read_csv(out / "per_sample.csv")) == 8


def test_two_run_dirs_in_one_process_exclude_each_other(tmp_path):
    first = RunDir(tmp_path / "r", "bench", {}, lock=True)
    with pytest.raises(UsageError, match="another cxrg run is writing"):
        RunDir(tmp_path / "r", "bench", {}, lock=True)
    first.close()
    RunDir(tmp_path / "r", "bench", {}, lock=True).close()


# ------------------------------------------------------------- 3 + 4. plugins cannot corrupt or stop a run

def test_plugins_cannot_take_another_models_name_or_stop_the_run(ms_cxr, tmp_path, plugins):
    annotations, images = ms_cxr
    alone = tmp_path / "alone"
    assert bench(annotations, images, alone) == 0
    out = tmp_path / "run"
    process = cxrg_process("bench", "--models", "oracle,impostor,exits-in-load,exits-in-heatmap,interrupts,"
                           "exits-at-import", "--dataset", "ms-cxr", "--annotations", str(annotations),
                           "--images", str(images), "--out", str(out), "--resamples", "100", "--no-report",
                           site=plugins)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "model 'impostor' has a card named 'oracle'" in stderr
    assert "model 'exits-in-load' failed to load: SystemExit: 3" in stderr
    assert "model 'exits-at-import' failed to import: SystemExit" in stderr
    rows = rows_by_id(out)
    solo = rows_by_id(alone)
    for (model, sample_id), row in rows.items():
        assert model in ("oracle", "exits-in-heatmap", "interrupts")
        if model == "oracle":  # oracle's numbers are its own, not the impostor's
            own = solo[(model, sample_id)]
            assert (row["cnr"], row["miou"]) == (own["cnr"], own["miou"])
        else:
            assert row["status"] == "failed"
            cause = "SystemExit" if model == "exits-in-heatmap" else "KeyboardInterrupt"
            assert row["error"].startswith(cause)
    assert sum(1 for key in rows if key[0] == "interrupts") == 8


def test_models_list_survives_plugins_that_exit(plugins):
    process = cxrg_process("models", "list", site=plugins)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in stderr
    assert "exits-at-import: error: model 'exits-at-import' failed to import: SystemExit" in stdout
    assert "slow: evil 1.0" in stdout and "oracle: cxrg" in stdout  # listed after the one that exited


def test_real_ctrl_c_stops_bench_with_n_of_m_and_exit_130_then_resumes(ms_cxr, tmp_path, plugins):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    args = ("bench", "--models", "slow", "--dataset", "ms-cxr", "--annotations", str(annotations), "--images",
            str(images), "--out", str(out), "--resamples", "100", "--no-report")
    process = cxrg_process(*args, site=plugins)
    deadline = time.monotonic() + 60
    while len(list((out / "heatmaps").rglob("*.npz"))) < 3:  # d1's two samples and d2's are done
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    line = [x for x in stderr.splitlines() if "interrupted" in x]
    assert len(line) == 1 and "Traceback" not in stderr
    done = int(line[0].split("interrupted: ")[1].split(" of ")[0])
    assert 1 <= done < 8 and "of 8 samples done; rerun the same command to resume" in line[0]
    finished = [r for r in read_csv(out / "per_sample.csv") if r["status"] == "scored"]
    assert len(finished) >= done
    again = cxrg_process(*args, site=plugins)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr
    rows = read_csv(out / "per_sample.csv")
    assert len(rows) == 8 and all(r["status"] == "scored" for r in rows)
    kept = {r["sample_id"]: r["seconds"] for r in finished}
    assert all(r["seconds"] == kept[r["sample_id"]] for r in rows if r["sample_id"] in kept)  # not redone


# --------------------------------------------------------------------------- 5-7. tune checkpoint, inputs

@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> tuple[Path, Path]:
    from cxrg.anatomy.lut import Lut
    from cxrg.tuning.phantoms import write_phantom_set

    folder = tmp_path_factory.mktemp("phantoms")
    return write_phantom_set(folder, 4, Lut.default()), folder / "images"


def make_trainer(tiny, phantoms, out: Path, steps: int = 3, inputs: dict | None = None):
    from cxrg.anatomy.lut import Lut
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.ldm.loading import load_ldm
    from cxrg.tuning.data import read_manifest
    from cxrg.tuning.trainer import Trainer, TuneConfig

    manifest, images = phantoms
    settings = HeatmapSettings(inference_steps=10, capture_steps=(4, 5, 6), otsu=False)
    config = TuneConfig(steps=steps, checkpoint_every=1, chunk=3, settings=settings, lr=0.05)
    run = RunDir(out, "tune", {"test": True})
    return Trainer(load_ldm(tiny), Lut.default(), read_manifest(manifest, images), config, run,
                   out.parent / "cache", inputs=inputs)


class Killed(BaseException):
    """Stands for the process dying between two writes."""


def _result(out: Path):
    from safetensors.torch import load_file

    return load_file(str(out / "tuned_embeddings.safetensors"))["rows"]


def test_tune_resume_equals_uninterrupted_at_every_kill_point(tiny, phantoms, tmp_path, monkeypatch):
    import torch

    import cxrg.tuning.trainer as trainer_module

    straight = make_trainer(tiny, phantoms, tmp_path / "straight")
    straight.train()
    expected, expected_losses = _result(tmp_path / "straight"), [r["loss"] for r in straight.losses]
    names = ("atomic_write_bytes", "atomic_write_csv", "atomic_write_json")
    originals = {name: getattr(trainer_module, name) for name in names}
    writes = 3 * 2  # three files per checkpoint: kill before each write of the first two checkpoints
    for kill_at in range(writes):
        calls = {"n": 0}

        def counting(original, calls=calls, kill_at=kill_at):
            def write(*args, **kwargs):
                if calls["n"] == kill_at:
                    raise Killed
                calls["n"] += 1
                return original(*args, **kwargs)
            return write

        for name in names:
            monkeypatch.setattr(trainer_module, name, counting(originals[name]))
        out = tmp_path / f"kill{kill_at}"
        with pytest.raises(Killed):
            make_trainer(tiny, phantoms, out).train()
        for name in names:
            monkeypatch.setattr(trainer_module, name, originals[name])
        resumed = make_trainer(tiny, phantoms, out)
        resumed.resume()
        resumed.train()
        assert torch.equal(_result(out), expected), kill_at
        assert [r["loss"] for r in resumed.losses] == expected_losses, kill_at


def test_tune_refuses_a_checkpoint_from_other_inputs(tiny, phantoms, tmp_path):
    first = make_trainer(tiny, phantoms, tmp_path / "r", steps=1, inputs={"manifest": "a"})
    first.train()
    other = make_trainer(tiny, phantoms, tmp_path / "r", steps=2, inputs={"manifest": "b"})
    with pytest.raises(UsageError, match=r"other inputs \(manifest changed\).*--restart"):
        other.resume()


def test_tune_cli_refuses_another_manifest_in_the_same_out(tiny, phantoms, tmp_path, capsys):
    manifest, images = phantoms
    out = tmp_path / "run"
    common = ("--images", str(images), "--out", str(out), "--weights", str(tiny), "--no-install")
    assert run_cli("tune", "--manifest", str(manifest), "--steps", "1", *common) == 0
    edited = tmp_path / "manifest.csv"
    rows = read_csv(manifest)
    rows[0]["prompt"], rows[1]["prompt"] = rows[1]["prompt"], rows[0]["prompt"]
    with edited.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert run_cli("tune", "--manifest", str(edited), "--steps", "2", *common) == 2
    err = capsys.readouterr().err
    assert "checkpoint made from other inputs (manifest, samples changed)" in err and "--restart" in err


def test_duplicate_sample_ids_are_refused_with_their_rows(tmp_path, phantoms):
    from cxrg.tuning.data import read_manifest

    manifest, images = phantoms
    rows = read_csv(manifest)
    rows[2]["sample_id"] = rows[0]["sample_id"]
    path = tmp_path / "dup.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InputError, match=rf"repeats sample_id.*{rows[0]['sample_id']}: rows 1, 3"):
        read_manifest(path, images)


def test_trainer_pixels_are_keyed_by_image_not_sample_id(tiny, phantoms, tmp_path):
    import torch

    from cxrg.tuning.data import TuningSample

    trainer = make_trainer(tiny, phantoms, tmp_path / "p")
    a, b = trainer.manifest.samples[:2]
    same_id = TuningSample(a.sample_id, b.image_path, b.prompt, b.locations)
    assert not torch.equal(trainer.pixels(a), trainer.pixels(same_id))
    assert torch.equal(trainer.pixels(same_id), trainer.pixels(b))


# ------------------------------------------------------------------------------- 8. MS-CXR merges

def write_ms_cxr(path: Path, rows: list[list]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MS_CXR_HEADER)
        writer.writerows(rows)
    return path


def test_same_dicom_and_phrase_on_another_path_is_another_sample(tmp_path):
    from cxrg.bench.datasets import read_ms_cxr

    images = tmp_path / "img"
    for name in ("a.jpg", "b.jpg"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((100, 100), np.uint8)).save(images / name)
    path = write_ms_cxr(tmp_path / "ms.csv", [
        ["d1", "Pneumonia", "left lower lobe opacity", "a.jpg", 10, 10, 20, 20, 100, 100],
        ["d1", "Pneumonia", "left lower lobe opacity", "b.jpg", 50, 50, 20, 20, 100, 100]])
    data = read_ms_cxr(path, images)
    assert [len(s.boxes) for s in data.samples] == [1, 1]
    assert {s.image_path.name for s in data.samples} == {"a.jpg", "b.jpg"}
    assert any("more than one image path" in note for note in data.notes)


def test_ms_cxr_loc_merges_are_counted_and_logged(tmp_path):
    from cxrg.bench.datasets import read_ms_cxr
    from cxrg.curation.extractors import make_extractor
    from cxrg.curation.mscxr import to_ms_cxr_loc, write_ms_cxr_loc

    images = tmp_path / "img"
    images.mkdir()
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(images / "a.jpg")
    path = write_ms_cxr(tmp_path / "ms.csv", [
        ["d1", "Pneumonia", "right lower lobe opacity", "a.jpg", 10, 10, 20, 20, 100, 100],
        ["d1", "Pneumonia", "opacity in the right lower lobe", "a.jpg", 40, 40, 20, 20, 100, 100],
        ["d1", "Pneumonia", "left upper lobe opacity", "a.jpg", 60, 10, 20, 20, 100, 100]])
    result = to_ms_cxr_loc(path, make_extractor("rules")[0])
    assert len(result.kept) == 3 and result.shared_prompts == 2 and result.merged_samples == 1
    loc = write_ms_cxr_loc(result, tmp_path / "loc", path)
    assert "one sample each under loc_pairs=phrase (the paper), 1 merged samples" in \
        (tmp_path / "loc" / "summary.md").read_text()
    assert len(read_ms_cxr(loc, images, pairs="phrase").samples) == 3  # the paper protocol: one per phrase
    data = read_ms_cxr(loc, images)  # the library's default (and the cxrg protocol's): merged
    assert len(data.samples) == 2
    merged = next(s for s in data.samples if len(s.boxes) == 2)
    assert merged.phrase == "right lower lobe opacity | opacity in the right lower lobe"
    assert any("2 phrases share an image and a prompt with another one: merged into 1 samples" in note
               for note in data.notes)


# ------------------------------------------------------------------------------------ robustness

def test_a_row_with_more_fields_than_the_header_is_one_failed_sample(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    with annotations.open("a", newline="") as handle:
        csv.writer(handle).writerow(["d9", "Pneumonia", "left pneumonia", mimic_path("d1"), 1, 1, 5, 5, 100,
                                     120, "extra", "fields"])
    out = tmp_path / "run"
    assert bench(annotations, images, out) == 0
    rows = rows_by_id(out)
    assert len(rows) == 9
    bad = rows[("oracle", "d9:0")]
    assert bad["status"] == "failed" and "2 more field(s) than the header" in bad["error"]
    assert "oracle: 8 of 9 samples scored, 1 failed" in capsys.readouterr().err


def test_fifo_is_refused_without_blocking(tmp_path):
    from cxrg.images import read_image

    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        read_image(fifo)


def test_csv_field_size_is_one_policy_for_every_reader(tmp_path, phantoms):
    manifest, images = phantoms
    rows = read_csv(manifest)
    rows[0]["sentence"] = "effusion " * 20_000  # 180,000 characters: over the csv module's default
    long = tmp_path / "long.csv"
    with long.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code = ("from cxrg.tuning.data import read_manifest; import sys; "
            "print(len(read_manifest(sys.argv[1], sys.argv[2]).samples))")
    done = subprocess.run([sys.executable, "-c", code, str(long), str(images)], capture_output=True,
                          text=True, timeout=60)  # a fresh process: nothing else has raised the limit
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"


def test_pixel_budget_and_aspect_are_checked_before_decoding(tmp_path, monkeypatch):
    from cxrg.images import read_image

    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(big)
    monkeypatch.setenv("CXRG_MAX_IMAGE_PIXELS", "100000")
    with pytest.raises(InputError, match=r"400x300 = 0.1 megapixels, over the limit of 0.1"):
        read_image(big)
    monkeypatch.delenv("CXRG_MAX_IMAGE_PIXELS")
    assert read_image(big).shape == (300, 400)
    strip = tmp_path / "strip.png"
    Image.fromarray(np.zeros((2, 500), np.uint8)).save(strip)
    with pytest.raises(InputError, match="aspect ratio over 8:1"):
        read_image(strip)


def test_truncated_dicom_says_truncated(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_images import write_dicom

    from cxrg.images import read_image

    path = write_dicom(tmp_path / "a.dcm", (np.arange(64 * 64, dtype=np.uint16) % 4096).reshape(64, 64))
    data = path.read_bytes()
    for cut in (len(data) - 10, len(data) - 5000, 566):
        (tmp_path / "cut.dcm").write_bytes(data[:cut])
        with pytest.raises(InputError, match="truncated"):
            read_image(tmp_path / "cut.dcm")


def test_out_under_a_file_is_one_line_not_an_internal_error(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    capsys.readouterr()
    code = bench(annotations, images, blocker / "run")
    err = capsys.readouterr().err
    assert code in (1, 2) and "internal error" not in err and str(blocker) in err
    assert len(err.strip().splitlines()) == 1


def test_wrong_value_types_in_cxrg_toml_name_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    for text, key, model in (
            ("weights = 5\n", "`weights` must be a path", "prior"),
            ('[ldm]\ninference_steps = "abc"\n', "`ldm.inference_steps` must be a whole number",
             "ldm-frozen"),
            ("device = 7\n", "`device` must be a string", "prior")):
        (tmp_path / "cxrg.toml").write_text(text)
        capsys.readouterr()
        assert run_cli("ground", str(image), "left pneumonia", "--model", model) != 0
        err = capsys.readouterr().err
        assert key in err and "cxrg.toml" in err and "internal error" not in err


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", " "])
def test_a_bad_numeric_variable_is_one_usage_line_naming_it(tmp_path, monkeypatch, capsys, value):
    """Every numeric CXRG_* variable goes through config.env_number: the same message and exit code 2."""
    from cxrg.bench.shards import stall_seconds
    from cxrg.config import env_number
    from cxrg.errors import UsageError

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    monkeypatch.setenv("CXRG_MAX_IMAGE_PIXELS", value)
    capsys.readouterr()
    assert run_cli("ground", str(image), "left pneumonia", "--model", "prior") == 2
    err = capsys.readouterr().err
    assert f"$CXRG_MAX_IMAGE_PIXELS={value!r} must be a positive number" in err
    assert "internal error" not in err and "Traceback" not in err
    monkeypatch.setenv("CXRG_SHARD_STALL_SECONDS", value)
    with pytest.raises(UsageError, match=r"\$CXRG_SHARD_STALL_SECONDS="):
        stall_seconds()
    monkeypatch.setenv("CXRG_SHARD_STALL_SECONDS", "2.5")
    assert stall_seconds() == 2.5
    monkeypatch.delenv("CXRG_SHARD_STALL_SECONDS")
    assert stall_seconds() == 300.0 and env_number("CXRG_NOT_SET_ANYWHERE", 7.0) == 7.0


def test_incomplete_curate_outputs_are_refused(tmp_path, phantoms):
    from cxrg.tuning.data import read_manifest

    manifest, images = phantoms
    folder = tmp_path / "curate"
    folder.mkdir()
    copy = folder / "manifest.csv"
    copy.write_bytes(manifest.read_bytes())
    mark_incomplete(folder, "curate")
    with pytest.raises(InputError, match="run that did not finish"):
        read_manifest(copy, images)
    mark_complete(folder)
    check_complete(copy)
    assert len(read_manifest(copy, images).samples) == 4


def test_curate_ms_cxr_leaves_no_incomplete_marker(ms_cxr, tmp_path):
    annotations, _ = ms_cxr
    out = tmp_path / "loc"
    assert run_cli("curate", "--ms-cxr", str(annotations), "--out", str(out), "--extractor", "rules") == 0
    assert not (out / "INCOMPLETE").exists() and list(out.glob("*_loc.csv"))


def test_prompt_over_77_tokens_is_refused(tiny):
    from cxrg.ldm.loading import load_ldm
    from cxrg.ldm.text import tokenize

    tokenizer = load_ldm(tiny).tokenizer
    tokenize(tokenizer, ["left lower pneumonia"])
    with pytest.raises(CxrgError, match=r"prompt is \d+ tokens long; the text encoder reads at most 77"):
        tokenize(tokenizer, ["left lower pneumonia " * 30])


# ------------------------------------------------------------------- issue 19: one prompt for every model

def test_bench_normalises_prompts_unless_exact_prompt(ms_cxr, tmp_path, capsys):
    annotations, images = ms_cxr
    assert bench(annotations, images, tmp_path / "n", models="oracle,prior") == 0
    err = capsys.readouterr().err
    assert "read into a different vocabulary prompt" in err
    rows = rows_by_id(tmp_path / "n")
    first = rows[("prior", "d1:0")]
    assert first["phrase"] == "right lower lobe opacity" and first["prompt"] == "right lower pneumonia"
    # a free-text model gets the dataset's text (the published MS-CXR protocol); a vocabulary model its
    # reading; neither's sample set depends on the other's parser
    assert rows[("oracle", "d1:0")]["prompt"] == "right lower lobe opacity"
    assert first["status"] == "scored" and rows[("oracle", "d1:0")]["status"] == "scored"
    assert bench(annotations, images, tmp_path / "e", "--exact-prompt", models="oracle,prior") == 0
    exact = rows_by_id(tmp_path / "e")
    assert exact[("prior", "d1:0")]["prompt"] == "right lower lobe opacity"
    assert "--exact-prompt: every prompt is given to the models as written" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 25: weights, settings, shards, sizes

def test_tampered_organism_weights_are_refused_and_nothing_is_copied(tmp_path, monkeypatch, capsys):
    """`cxrg weights organism` hashes the tensors of every copy against EXPECTED_SHA256: 64 flipped bytes
    in the U-Net are one line, exit 1, and neither the target nor a staging folder is left behind; an
    existing folder keeps what it had (tuned embeddings); an untouched copy still goes through."""
    import shutil

    import cxrg.organism.weights as organism_weights

    source = tmp_path / "installed"
    shutil.copytree(organism_weights.committed_weights(), source)
    unet = source / "cxr_image_synthesis_latent_diffusion_model" / "models" / "diffusion_model.pth"
    data = bytearray(unet.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    unet.write_bytes(bytes(data))
    monkeypatch.setattr(organism_weights, "FOLDER", source)

    fresh = tmp_path / "fresh"
    assert run_cli("weights", "organism", str(fresh)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not match the committed hash" in err[0] and "Traceback" not in err[0]
    assert not fresh.exists()

    existing = tmp_path / "existing"
    (existing / "tuned").mkdir(parents=True)
    (existing / "tuned" / "embeddings.safetensors").write_bytes(b"kept")
    assert run_cli("weights", "organism", str(existing)) == 1
    assert sorted(p.relative_to(existing).as_posix() for p in existing.rglob("*")) == [
        "tuned", "tuned/embeddings.safetensors"]

    unet.unlink()  # a file that does not load at all is refused the same way
    assert run_cli("weights", "organism", str(fresh)) == 1
    assert "do not match" in capsys.readouterr().err and not fresh.exists()

    monkeypatch.setattr(organism_weights, "FOLDER", organism_weights.Path(organism_weights.__file__).parent
                        / "weights")
    assert run_cli("weights", "organism", str(existing)) == 0
    assert (existing / "tuned" / "embeddings.safetensors").read_bytes() == b"kept"
    assert (existing / unet.relative_to(source)).is_file()
    assert not list(existing.glob(".cxrg-organism-*"))


@pytest.mark.parametrize(("raw", "cell"), [
    ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("'=1+1", "''=1+1"), ("''@x", "'''@x"), ("-", "'-"), ("-inf", "'-inf"),
    ("-0.07", "-0.07"), ("-1e-05", "-1e-05"), ("+3", "+3"), ("-.5", "-.5"), ("0.25", "0.25"),
    ("left effusion", "left effusion"), ("'quoted'", "'quoted'"), ("", ""), ("a=b", "a=b"),
    (-0.07, -0.07), (np.float32(-2.5), np.float32(-2.5)), (None, None)])
def test_csv_cells_are_spreadsheet_safe_and_read_back_raw(raw, cell):
    """OWASP's advice: text that begins with = + - @ tab or CR gets a leading ' (numbers stay numbers);
    cxrg's readers undo it exactly, quotes already there included."""
    from cxrg.runs import csv_cell, csv_cell_raw

    assert csv_cell(raw) == cell and type(csv_cell(raw)) is type(raw)
    if isinstance(raw, str):
        assert csv_cell_raw(cell) == raw


def test_formula_phrases_are_neutralised_in_csv_kept_raw_in_json_and_resume(ms_cxr, tmp_path, capsys):
    """A dataset phrase and sample that a spreadsheet would run as formulas reach per_sample.csv with a
    leading quote while negative CNRs stay numbers, a rerun keeps every row (its fingerprint reads back the
    raw value), and a rater name like it is neutralised in ratings.csv and raw in the database."""
    import sqlite3

    from test_study import build_study

    annotations, images = ms_cxr
    hostile = '=HYPERLINK("http://evil.example","x") left pleural effusion'
    text = annotations.read_text().replace("left pleural effusion", hostile.replace('"', '""').join('""'))
    # and a box far from its prompt's atlas region: the prior scores it with a negative CNR
    far = f"d4,Pneumothorax,right apical pneumothorax,{mimic_path('d4')},70,90,45,35,120,130\n"
    annotations.write_text(text + far)
    out = tmp_path / "run"
    assert bench(annotations, images, out, "--exact-prompt", models="oracle,prior") == 0
    raw_text = (out / "per_sample.csv").read_text()
    assert "'=HYPERLINK" in raw_text and ",=HYPERLINK" not in raw_text and '"=HYPERLINK' not in raw_text
    cnrs = [r["cnr"] for r in rows_by_id(out).values() if r["cnr"]]
    assert any(cnr.startswith("-") for cnr in cnrs)  # negative CNRs are numbers, written as numbers
    assert all(np.isfinite(float(cnr)) for cnr in cnrs)
    capsys.readouterr()
    assert bench(annotations, images, out, "--exact-prompt", models="oracle,prior") == 0
    assert "recomput" not in capsys.readouterr().err  # every row kept: the raw phrase was read back
    from cxrg.bench.harness import read_per_sample

    assert any(r["phrase"] == hostile for r in read_per_sample(out / "per_sample.csv").values())

    study, _ = build_study(ms_cxr, tmp_path / "s")
    from cxrg.study import db

    con = db.open_study(study)
    rater = db.get_or_add_rater(con, "=2+5+cmd|' /C calc'!A0")
    db.add_rating(con, rater["id"], db.rater_items(rater)[0], 4, 1)
    con.close()
    assert run_cli("study", "export", str(study)) == 0
    exported = (study / "ratings.csv").read_text()
    assert "\n'=2+5+cmd" in exported and "\n=2+5" not in exported
    stored = sqlite3.connect(study / "study.sqlite").execute("SELECT name FROM raters").fetchone()[0]
    assert stored == "=2+5+cmd|' /C calc'!A0"


BAD_SETTINGS = [("smoothing_sigma", "nan", "nan", "finite number >= 0"),
                ("smoothing_sigma", "-3", "-3", "finite number >= 0"),
                ("smoothing_sigma", "inf", "inf", "finite number >= 0"),
                ("batch", "0", "0", "whole number >= 1"),
                ("inference_steps", "0", "0", "whole number >= 1"),
                ("inference_steps", "-4", "-4", "whole number >= 1"),
                ("capture_steps", "5,3", "[5, 3]", "start"),
                ("capture_steps", "0,500", "[0, 500]", "0..99")]


@pytest.mark.parametrize(("key", "option", "toml", "says"), BAD_SETTINGS)
def test_settings_that_are_not_usable_numbers_are_one_usage_line(tiny, tmp_path, monkeypatch, capsys, key,
                                                                 option, toml, says):
    """nan, inf, negative or zero settings are refused at load, from -o, cxrg.toml [ldm] and [models.NAME]:
    one line naming the setting, exit 2, before any sample is scored (today they are scored, or every
    sample fails while the run exits 0)."""
    monkeypatch.chdir(tmp_path)
    image = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(image)
    ground = ("ground", str(image), "left pneumonia", "--model", "ldm-frozen", "--weights", str(tiny),
              "--out", str(tmp_path / "map.png"))
    for how in ("-o", "[ldm]", "[models.ldm-frozen]"):
        (tmp_path / "cxrg.toml").unlink(missing_ok=True)
        extra: tuple[str, ...] = ()
        if how == "-o":
            extra = ("-o", f"ldm-frozen.{key}={option}")
        else:
            (tmp_path / "cxrg.toml").write_text(f"{how}\n{key} = {toml}\n")
        capsys.readouterr()
        assert run_cli(*ground, *extra) == 2, (how, key, option)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and key in err[0] and says in err[0] and "Traceback" not in err[0], (how, err)
        assert not (tmp_path / "map.png").exists()


def test_bad_settings_stop_bench_environment_and_tune_too(ms_cxr, tiny, tmp_path, monkeypatch, capsys):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    for extra, env, says in ((("-o", "ldm-frozen.batch=0"), {}, "batch"),
                             (("-o", "ldm-frozen.smoothing_sigma=inf"), {}, "smoothing_sigma"),
                             ((), {"CXRG_LDM_BATCH": "0"}, "$CXRG_LDM_BATCH = 0"),
                             ((), {"CXRG_LDM_BATCH": "many"}, "$CXRG_LDM_BATCH = 'many'")):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = bench(annotations, images, out, "--weights", str(tiny), *extra, models="oracle,ldm-frozen")
        assert code == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, err
        assert not (out / "per_sample.csv").exists()
        for name in env:
            monkeypatch.delenv(name)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("sample_id,image_path,prompt\n")
    for flag, value in (("--lr", "nan"), ("--lr", "0"), ("--alpha", "-1"), ("--jitter", "inf"),
                        ("--epsilon", "nan"), ("--epochs", "inf"), ("--div-weight", "nan")):
        capsys.readouterr()
        assert run_cli("tune", "--manifest", str(manifest), "--images", str(tmp_path), "--weights", str(tiny),
                       "--out", str(tmp_path / "tune"), flag, value) == 2, flag
        assert flag in capsys.readouterr().err


@pytest.mark.parametrize(("device", "how"), [("gpu", "--device"), ("cuda:abc", "--device"),
                                             ("cuda:", "--device"), ("gpu", "CXRG_DEVICE"), ("", "--device")])
def test_a_device_that_is_not_one_is_a_usage_line(tmp_path, monkeypatch, capsys, device, how):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(image)
    args = ["ground", str(image), "left pneumonia", "--model", "prior", "--out", str(tmp_path)]
    if how == "CXRG_DEVICE":
        monkeypatch.setenv("CXRG_DEVICE", device)
    else:
        args += ["--device", device]
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"device {device!r} is not a device" in err[0], err
    from cxrg.config import check_device

    assert [check_device(d) for d in ("cpu", "cuda", "cuda:1", "mps", "auto")] == ["cpu", "cuda", "cuda:1",
                                                                                    "mps", "auto"]


def test_heatmap_settings_check_every_value_in_the_library():
    from cxrg.ldm.config import HeatmapSettings

    assert HeatmapSettings(smoothing_sigma=0.0).smoothing_sigma == 0.0  # no smoothing is a choice
    for changes in (dict(smoothing_sigma=float("nan")), dict(smoothing_sigma=-3.0), dict(inference_steps=0),
                    dict(capture_steps=()), dict(inference_steps=50), dict(timestep_spacing="middle"),
                    dict(layers=()), dict(otsu="yes"), dict(capture_order="sideways")):
        with pytest.raises(UsageError):
            HeatmapSettings(**changes)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_hand_set_shard_variables_fail_in_the_stated_time_and_honour_sigterm(ms_cxr, tmp_path, monkeypatch):
    """WORLD_SIZE=2 RANK=0 with no peer: without MASTER_ADDR one usage line at once (exit 2); with it, one
    line after $CXRG_SHARD_START_SECONDS (here 2 s; exit 1); SIGTERM during the wait ends the process at
    once (exit 130). The run folder is never touched. Today the wait is 6 hours and ignores SIGTERM."""
    import socket

    annotations, images = ms_cxr
    out = tmp_path / "run"
    args = ("bench", "--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(annotations),
            "--images", str(images), "--out", str(out), "--resamples", "100", "--no-report")
    hand_set = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1"}
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    proc = cxrg_process(*args, env=hand_set)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip().count("\n") == 0, err
    assert "WORLD_SIZE=2 and RANK=0 are set without MASTER_ADDR and MASTER_PORT" in err

    port = _free_port()
    started = time.monotonic()
    proc = cxrg_process(*args, env={**hand_set, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                    "CXRG_SHARD_START_SECONDS": "2"})
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "did not join within 2 s" in err and "Traceback" not in err, err
    assert err.strip().count("\n") == 0 and time.monotonic() - started < 30
    assert not out.exists()

    port = _free_port()
    proc = cxrg_process(*args, env={**hand_set, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                    "CXRG_SHARD_START_SECONDS": "600"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # rank 0 listens for its peers: it is waiting now
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and time.monotonic() - stopped < 10, (proc.returncode, err)
    assert "stopped while waiting for the other processes to join" in err and "Traceback" not in err
    assert not out.exists()


NAN_MAPS = '''
import numpy as np
from cxrg.registry import ModelCard

class AllNan:  # a model that saw no pixel of the image: both metrics undefined
    card = ModelCard(name="all-nan", version="1", licence="MIT", description="test plugin")
    def load(self, weights_dir=None, device="cpu"): pass
    def heatmap(self, query): return np.full(query.image.shape, np.nan, np.float32)
'''


def test_all_nan_maps_are_not_counted_as_scored(ms_cxr, tmp_path):
    """The terminal line and results.md count what the rows say: an all-NaN map is `undefined` in
    per_sample.csv and is reported as undefined, not as scored; the counts add up."""
    annotations, images = ms_cxr
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "nanmaps", {"all-nan": "nanmod:AllNan"}, {"nanmod": NAN_MAPS})
    out = tmp_path / "run"
    process = cxrg_process("bench", "--models", "oracle,all-nan", "--dataset", "ms-cxr", "--annotations",
                           str(annotations), "--images", str(images), "--out", str(out), "--resamples",
                           "100", "--no-report", site=site)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    statuses = [r["status"] for (model, _), r in rows_by_id(out).items() if model == "all-nan"]
    assert statuses == ["undefined"] * 8
    line = next(text for text in stderr.splitlines() if text.startswith("all-nan:"))
    assert line.startswith("all-nan: 0 of 8 samples scored, 0 failed, 8 undefined"), line
    assert "oracle: 8 of 8 samples scored, 0 failed\n" in stderr  # a model without undefined maps: as before
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts["all-nan"]["scored"] + counts["all-nan"]["failed"] + counts["all-nan"]["undefined"] == 8
    assert "all-nan: 0 of 8 samples scored, 0 failed, 8 undefined" in (out / "results.md").read_text()


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (31, 200), (100, 20)])
def test_images_below_the_minimum_size_are_refused_in_one_line(tmp_path, capsys, size):
    """1 x 1 and 2 x 3 images were grounded; anything under MIN_SIDE (32) pixels on a side is one line."""
    from cxrg.images import MIN_SIDE, read_image

    height, width = size
    image = tmp_path / "small.png"
    Image.fromarray(np.zeros((height, width), np.uint8)).save(image)
    capsys.readouterr()
    assert run_cli("ground", str(image), "left pneumonia", "--model", "prior", "--out", str(tmp_path)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"image is {width}x{height}: under {MIN_SIDE} pixels on a side" in err[0]
    assert not list(tmp_path.glob("*.overlay.png"))
    assert read_image(image).shape == size  # decoding alone takes any size; grounding does not
    Image.fromarray(np.zeros((MIN_SIDE, MIN_SIDE), np.uint8)).save(image)
    assert run_cli("ground", str(image), "left pneumonia", "--model", "prior", "--out", str(tmp_path)) == 0


def test_bench_records_an_image_too_small_as_a_failed_row(ms_cxr, tmp_path):
    """In batch work the refusal is a failed row with its reason; the other samples are scored."""
    annotations, images = ms_cxr
    Image.fromarray(np.zeros((3, 2), np.uint8)).save(images / mimic_path("d5"), format="JPEG")
    out = tmp_path / "run"
    assert bench(annotations, images, out) == 0
    rows = rows_by_id(out)
    assert rows[("oracle", "d5:0")]["status"] == "failed"
    assert "under 32 pixels on a side" in rows[("oracle", "d5:0")]["error"]
    assert sum(r["status"] == "scored" for r in rows.values()) == len(rows) - 1
