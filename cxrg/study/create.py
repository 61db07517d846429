"""`study create`: draw the cases from bench runs and write a self-contained study folder.

A case is one image-text pair that every chosen model scored in the runs (the paired design of
Appendix J: the same pair is rated once per model). Cases are drawn per class, up to ``per_class`` each,
spread over locations: the pairs of a class are grouped by location (the prompt's locations when the phrase
is a structured prompt, else the locations the rules extractor finds in the phrase, else "unspecified"),
each group is shuffled with the seed, and the groups are taken from in turn (round robin) until the class
has its share, so that rare locations are not crowded out by frequent ones. A class with fewer pairs gives
what it has, and the report says so.

The study folder holds everything the page shows, so it does not depend on the runs afterwards:
``media/images/<token>.png`` (the radiograph, windowed with a percentile stretch, reduced for display),
``media/heatmaps/<token>.png`` (the saved heatmap in colour, transparent where it is NaN; random names so
nothing in a URL tells the model) and ``study.sqlite``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import CxrgError, InputError, UsageError
from cxrg.study.db import FORMAT_VERSION, create_database, db_path, now, transaction

MEDIA = "media"
DATASET_KEYS = ("dataset", "annotations", "split")
WINDOW_PERCENTILES = (0.5, 99.5)
HEATMAP_COLORMAP = "jet"


@dataclass
class Run:
    path: Path
    config: dict
    rows: dict[tuple[str, str], dict[str, str]]

    @property
    def models(self) -> list[str]:
        return sorted({model for model, _ in self.rows})


@dataclass
class ClassDraw:
    category: str
    eligible: int
    drawn: int
    locations: int


@dataclass
class CreateReport:
    study: Path
    models: list[str]
    classes: list[ClassDraw]
    skipped: Counter = field(default_factory=Counter)
    per_class: int = 0
    examples: dict[str, str] = field(default_factory=dict)
    """One example per skip reason, where the reason has one (e.g. both texts of a phrase mismatch)."""

    @property
    def cases(self) -> int:
        return sum(c.drawn for c in self.classes)

    def lines(self) -> list[str]:
        out = []
        for c in self.classes:
            short = "" if c.drawn >= self.per_class else f" (only {c.eligible} eligible)"
            out.append(f"{c.category}: {c.drawn} of {self.per_class} cases drawn{short}, "
                       f"{c.locations} location group(s)")
        for reason, n in self.skipped.most_common():
            example = f" (e.g. {self.examples[reason]})" if reason in self.examples else ""
            out.append(f"skipped {n} sample(s): {reason}{example}")
        out.append(f"{self.cases} cases x {len(self.models)} models = {self.cases * len(self.models)} "
                   f"ratings per rater; study in {self.study}")
        return out


def read_run(path: Path) -> Run:
    from cxrg.bench.harness import read_per_sample

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InputError(f"{path} is not a bench run folder (no config.json)",
                         hint="pass a `cxrg bench` --out")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read config.json: {exc}", where=str(config_file)) from exc
    if config.get("command") != "bench":
        raise InputError(f"{path} was written by `cxrg {config.get('command')}`, not `cxrg bench`")
    if not (path / "per_sample.csv").is_file():
        raise InputError(f"{path} has no per_sample.csv", hint="run `cxrg bench` to the end first")
    return Run(path, config.get("config", {}), read_per_sample(path / "per_sample.csv"))


def read_run_dataset(run: Run):
    """The dataset a bench run scored, read as `cxrg bench` read it (MS-CXR-loc from the run's own CSV)."""
    from cxrg.bench.datasets import read_dataset

    cfg = run.config
    name, split = str(cfg.get("dataset") or ""), cfg.get("split")
    if not cfg.get("annotations") or not cfg.get("images"):
        raise InputError("the run's config.json lacks annotations/images",
                         where=str(run.path / "config.json"))
    annotations, images = Path(cfg["annotations"]), Path(cfg["images"])
    if name == "ms-cxr-loc":
        found = sorted((run.path / "ms-cxr-loc").glob("*_loc.csv"))
        if not found:
            raise InputError("the MS-CXR-loc run has no ms-cxr-loc/*_loc.csv", where=str(run.path))
        return read_dataset("ms-cxr", found[0], images, split=split)
    return read_dataset(name, annotations, images, split=split)


def dataset_phrase(sample) -> str:
    """The phrase as the dataset wrote it (what clinicians see), whatever prompt a model was given."""
    return sample.phrase or sample.prompt


def phrase_mismatch(row: dict[str, str], sample) -> str | None:
    """None when a bench row scored this sample's phrase, else what differs (both texts).

    Rows are matched on the sample id and the dataset's phrase (per_sample.csv's `phrase` column), never on
    the `prompt` column: a model that takes vocabulary prompts was asked the phrase's vocabulary reading
    ("small left effusion" -> "left pleural pleural effusion"), which is the same sample. A per_sample.csv
    written before the `phrase` column existed is matched on its prompt: the dataset's text or its reading.
    """
    expected = dataset_phrase(sample)
    scored = row.get("phrase") or ""
    if scored:
        return None if scored == expected else f"scored {scored!r}, the dataset has {expected!r}"
    prompt = row.get("prompt") or ""
    if prompt in ("", sample.prompt, expected) or prompt == _reading(sample):
        return None
    return f"was asked {prompt!r}, the dataset has {expected!r}"


def _reading(sample) -> str | None:
    from cxrg.phrases import normalise
    from cxrg.vocab import PATHOLOGIES

    try:
        return normalise(sample.prompt, pathology=sample.category if sample.category in PATHOLOGIES
                         else None).prompt
    except CxrgError:
        return None


def location_group(phrase: str, category: str) -> str:
    """The location(s) a phrase names: the structured prompt's, else the rules extractor's, else
    'unspecified'."""
    from cxrg.vocab import Prompt

    try:
        locations = Prompt.parse(phrase).locations
    except CxrgError:
        try:
            from cxrg.curation.rules import locate

            locations = locate(phrase, category)[1]
        except Exception:  # a class the rules do not know: group it as unspecified
            locations = ()
    return " and ".join(locations) if locations else "unspecified"


def spread_draw(groups: dict[str, list[str]], n: int, rng: np.random.Generator) -> list[str]:
    """Up to `n` ids, taking from the (shuffled) location groups in turn so locations stay diverse."""
    names = sorted(groups)
    order = [names[k] for k in rng.permutation(len(names))]
    queues = {name: [groups[name][k] for k in rng.permutation(len(groups[name]))] for name in order}
    chosen: list[str] = []
    while len(chosen) < n and any(queues.values()):
        for name in order:
            if queues[name] and len(chosen) < n:
                chosen.append(queues[name].pop(0))
    return chosen


def display_image(image: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 grey: a percentile stretch (robust to burnt-in labels and collimation), reduced for display."""
    from PIL import Image

    lo, hi = np.percentile(image, WINDOW_PERCENTILES)
    scaled = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    grey = Image.fromarray((scaled * 255 + 0.5).astype(np.uint8))
    h, w = image.shape
    scale = max_side / max(h, w)
    if scale < 1:
        grey = grey.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    return np.asarray(grey)


def colour_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """RGBA uint8 of a [0, 1] heatmap in the colour map, its opacity growing with the value (as in the
    report: low values leave the film visible, not painted blue); fully transparent where NaN."""
    from matplotlib import colormaps

    from cxrg.report.imaging import heat_alpha

    finite = np.isfinite(heatmap)
    values = np.clip(np.where(finite, heatmap, 0), 0, 1)
    rgba = colormaps[HEATMAP_COLORMAP](values)
    rgba[..., 3] = finite * heat_alpha(values)
    return (rgba * 255 + 0.5).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def create_study(runs: Sequence[Path], models: Sequence[str], out: Path, per_class: int = 50, seed: int = 0,
                 image_size: int = 1024) -> CreateReport:
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.images import read_annotated_image

    if not runs:
        raise UsageError("no bench run given", hint="pass --runs RUN_DIR (a `cxrg bench` --out folder)")
    models = list(models)
    if not models or len(set(models)) != len(models):
        raise UsageError("--models must name each model once", hint="e.g. --models ldm,biovil-t")
    if per_class < 1:
        raise UsageError("--per-class must be at least 1")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty",
                         hint="choose a new --out (a study keeps its ratings)")

    loaded = [read_run(path) for path in runs]
    first = loaded[0]
    for run in loaded[1:]:
        for key in DATASET_KEYS:
            if run.config.get(key) != first.config.get(key):
                raise UsageError(f"the runs scored different data: {key} is {first.config.get(key)!r} in "
                                 f"{first.path} but {run.config.get(key)!r} in {run.path}",
                                 hint="pass runs of the same dataset")
    source: dict[str, Run] = {}
    for model in models:
        for run in loaded:
            if model in run.models:
                source[model] = run
                break
        else:
            found = sorted({m for run in loaded for m in run.models})
            raise UsageError(f"model {model!r} is in none of the runs",
                             hint=f"models in the runs: {', '.join(found) or 'none'}")
    stores = {model: HeatmapStore(source[model].path) for model in models}
    for model, store in stores.items():
        if not store.sample_ids(model):
            raise InputError(f"run {source[model].path} kept no heatmaps of {model}",
                             hint="run `cxrg bench` again without --no-save-heatmaps")

    dataset = read_run_dataset(first)
    skipped: Counter = Counter()
    examples: dict[str, str] = {}
    by_class: dict[str, dict[str, list[str]]] = {}
    samples = {}
    for sample in dataset.samples:
        reason = None
        if sample.error or sample.image_path is None:
            reason = "the sample is unreadable in the dataset"
        for model in models:
            row = source[model].rows.get((model, sample.sample_id))
            if reason:
                break
            if row is None:
                reason = f"{model} did not score the sample"
            elif row.get("error"):
                reason = f"{model} failed on the sample"
            elif (mismatch := phrase_mismatch(row, sample)) is not None:
                reason = "the run scored another phrase than the dataset has"
                examples.setdefault(reason, f"{sample.sample_id}: {model} {mismatch}")
            elif not stores[model].has(model, sample.sample_id):
                reason = f"no saved heatmap of {model}"
        if reason:
            skipped[reason] += 1
            continue
        samples[sample.sample_id] = sample
        group = location_group(sample.prompt, sample.category)
        by_class.setdefault(sample.category, {}).setdefault(group, []).append(sample.sample_id)
    if not samples:
        raise UsageError("no sample was scored by every model with a saved heatmap",
                         hint="; ".join(f"{n} {why}" for why, n in skipped.most_common()) or None)

    rng = np.random.default_rng(seed)
    classes: list[Any] = []
    drawn: list[Any] = []
    for category in sorted(by_class):
        groups = by_class[category]
        chosen = spread_draw(groups, per_class, rng)
        classes.append(ClassDraw(category, sum(len(v) for v in groups.values()), len(chosen), len(groups)))
        drawn.extend((category, sid) for sid in chosen)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write_study(work, drawn, samples, models, source, stores, seed, per_class, image_size,
                     read_annotated_image)
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return CreateReport(out, models, classes, skipped, per_class, examples)


def _write_study(work: Path, drawn, samples, models, source, stores, seed, per_class, image_size,
                 read_image) -> None:
    from cxrg import __version__
    from cxrg.progress import progress
    from cxrg.runs import atomic_write_bytes

    con = create_database(db_path(work))
    tokens: set[str] = set()

    def token() -> str:
        while (value := secrets.token_hex(8)) in tokens:
            pass
        tokens.add(value)
        return value

    items = []
    with transaction(con):
        info = {"format": FORMAT_VERSION, "seed": int(seed), "per_class": per_class, "models": list(models),
                "runs": {m: str(Path(source[m].path).resolve()) for m in models}, "created": now(),
                "cxrg": __version__, "dataset": source[models[0]].config.get("dataset")}
        con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                        [(k, json.dumps(v)) for k, v in info.items()])
        for name in models:
            con.execute("INSERT INTO models (name, run) VALUES (?, ?)", (name, str(source[name].path)))
        model_ids = {r["name"]: r["id"] for r in con.execute("SELECT id, name FROM models")}
        with progress("study create", total=len(drawn), unit="cases") as bar:
            for case_id, (category, sid) in enumerate(drawn, start=1):
                sample = samples[sid]
                image = read_image(sample.image_path, sample.image_size)
                name = f"{MEDIA}/images/{token()}.png"
                atomic_write_bytes(work / name, _png(display_image(image, image_size)))
                con.execute("INSERT INTO cases (id, sample_id, category, phrase, location, image_file, "
                            "height, width) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (case_id, sid, category, dataset_phrase(sample),
                             location_group(sample.prompt, category), name, image.shape[0], image.shape[1]))
                for model in models:
                    heatmap, shape = stores[model].load(model, sid)
                    if tuple(shape) != image.shape:
                        raise InputError(f"the saved heatmap of {model} for {sid} is for a "
                                         f"{shape[1]}x{shape[0]} image, the image is "
                                         f"{image.shape[1]}x{image.shape[0]}",
                                         where=str(stores[model].path(model, sid)))
                    file = f"{MEDIA}/heatmaps/{token()}.png"
                    atomic_write_bytes(work / file, _png(colour_heatmap(heatmap)))
                    row = source[model].rows[(model, sid)]
                    items.append((case_id, model_ids[model], file, _float(row.get("cnr")),
                                  _float(row.get("miou"))))
                bar.advance(1)
        # item ids in a seeded random order: neither ids nor file names tell which model made a map
        order = np.random.default_rng(np.random.SeedSequence([int(seed), 1])).permutation(len(items))
        con.executemany("INSERT INTO items (id, case_id, model_id, heatmap_file, cnr, miou) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [(int(k) + 1, *items[i]) for k, i in zip(order, range(len(items)), strict=True)])
    con.close()


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and np.isfinite(value) else None
