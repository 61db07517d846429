"""cxrg from Python: what a notebook calls, and what the `ground` and `bench` commands call too.

    import cxrg
    g = cxrg.ground("chest.dcm", "left pleural effusion")          # the prior: no weights needed
    model = cxrg.load_model("ldm-frozen", weights="weights/")       # settings resolved as the CLI does
    g = model.ground(array_or_pil_or_dataset, "right lower lobe pneumonia")
    g.heatmap, g.peak, g.box, g.plot(), g.save("out/")              # the CLI's three files
    run = cxrg.bench("oracle,prior", "vindr-cxr", annotations=..., images=...)
    run.summary, run.per_sample, run.to_pandas(), run.report()

Settings resolve exactly as on the command line (arguments > ./cxrg.toml > $CXRG_HOME/config.toml >
environment > defaults; cxrg.config) and errors are the same CxrgErrors with the same messages. torch is
imported only when a model that needs it loads.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrg.errors import InputError, UsageError
from cxrg.grounding import (
    Grounding,
    check_groundable,
    collect_images,
    ground_array,
    grounding_of,
    model_progress,
    prompt_for,
)
from cxrg.images import as_image
from cxrg.registry import HeatmapModel

if TYPE_CHECKING:
    from cxrg.config import Config

__all__ = ["Grounding", "Model", "Run", "bench", "demo_image", "ground", "load_model", "read_run"]

REPORT_AUTO_PAIRS = 2_000
"""`bench` writes report.html by itself up to this many (model, sample) pairs (report=True forces it)."""


class Model:
    """A loaded grounding model: `ground` one image, `ground_many` a series; `.model` is the plugin object."""

    def __init__(self, model: HeatmapModel, options: dict[str, Any], weights: Any = None):
        self.model = model
        self.options = options
        """The option values it was given (from the arguments, cxrg.toml or the environment)."""
        self.weights = weights
        """The weights folder it was loaded from (None: the default lookup)."""
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """The model's identity as `cxrg bench` records it (name, versions, weight files, options,
        settings): what a DICOM SEG names as the algorithm's weights."""
        if self._fingerprint is None:
            from cxrg.export.grounding import model_fingerprint

            self._fingerprint = model_fingerprint(self.name, self.model, self.options, self.weights)
        return self._fingerprint

    @property
    def name(self) -> str:
        return self.model.card.name

    @property
    def card(self):
        return self.model.card

    def __repr__(self) -> str:
        return f"<cxrg model {self.name} {self.card.version}>"

    def ground(self, image: Any, phrase: str, exact: bool = False) -> Grounding:
        """Where in `image` is `phrase`? `image`: a path (PNG, JPEG, DICOM), a numpy array (H x W, any
        numeric dtype), a PIL image or a pydicom Dataset. A vocabulary model (prior, ldm) gets the phrase
        read by cxrg.phrases.normalise (`exact=True`: as typed), as `cxrg ground` does."""
        check_groundable(self.model)
        prompt, _ = prompt_for(self.model, phrase, exact)
        with model_progress(self.model):
            return self._ground(image, phrase, prompt)

    def _ground(self, image: Any, phrase: str, prompt: str) -> Grounding:
        if isinstance(image, str | Path) and not Path(image).is_file():
            found = collect_images(str(image))  # not there: the same error as `cxrg ground`
            raise UsageError(f"{image} is a folder or pattern of {len(found)} images, not one image",
                             hint="ground them with ground_many(cxrg.grounding.collect_images(...), phrase)")
        pixels, source = as_image(image)
        return self._finish(ground_array(self.model, pixels, prompt, phrase, source, self.options), image)

    def _finish(self, result: Grounding, image: Any) -> Grounding:
        """What the API adds to a Grounding: the model's fingerprint, the pydicom Dataset it came from (the
        SEG's source) and, for an LDM, its word maps (computed on first use)."""
        result.weights_fingerprint = self.fingerprint
        if _is_dicom_dataset(image):
            result.dicom = image
        engine = getattr(self.model, "engine", None)
        if engine is not None and hasattr(engine, "ldm"):
            from functools import partial

            from cxrg.ldm.words import word_maps

            result._token_maps = partial(word_maps, engine, result.image, result.prompt)
        return result

    def ground_many(self, images: Iterable[Any], phrases: str | Sequence[str], batch_size: int | None = None,
                    exact: bool = False, progress: bool = True) -> Iterator[Grounding]:
        """Ground one phrase on every image, or phrases[k] on images[k]; yields a Grounding per pair, in
        order, with a progress bar (cxrg.progress). Consecutive pairs on the same image share the model's
        work on it (one DDIM inversion for an LDM); `batch_size` caps how many prompts go to the model in
        one call (default: all of one image's)."""
        from cxrg.progress import progress as shown

        check_groundable(self.model)
        images = list(images)
        texts = [phrases] * len(images) if isinstance(phrases, str) else list(phrases)
        if len(texts) != len(images):
            raise UsageError(f"{len(images)} images but {len(texts)} phrases",
                             hint="give one phrase for all images, or one per image")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        prompts = [prompt_for(self.model, text, exact)[0] for text in texts]
        with shown("ground", total=len(images), unit="images", enabled=progress) as bar:
            k = 0
            while k < len(images):
                end = k + 1
                while (end < len(images) and images[end] is images[k]
                       and (batch_size is None or end - k < batch_size)):
                    end += 1
                if end - k > 1 and hasattr(self.model, "heatmaps"):
                    yield from self._ground_group(images[k], texts[k:end], prompts[k:end])
                else:
                    yield self._ground(images[k], texts[k], prompts[k])
                    end = k + 1
                bar.advance(end - k)
                k = end

    def _ground_group(self, image: Any, texts: list[str], prompts: list[str]) -> Iterator[Grounding]:
        """Several prompts on one image in one model call (the model's `heatmaps`)."""
        from cxrg.images import check_min_side
        from cxrg.registry import make_query

        pixels, source = as_image(image)
        check_min_side(pixels, source or "image")
        queries = [make_query(self.card, pixels, p, None, Path(source) if source else None) for p in prompts]
        maps = self.model.heatmaps(queries)  # type: ignore[attr-defined]
        for text, prompt, heatmap in zip(texts, prompts, maps, strict=True):
            yield self._finish(grounding_of(self.model, pixels, heatmap, prompt, text, source, self.options),
                               image)


def open_model(name: str, weights: str | Path | None = None, device: str | None = None,
               shortcuts: dict[str, Any] | None = None, pairs: dict[str, dict[str, Any]] | None = None,
               cfg: Config | None = None) -> Model:
    """The loading both `load_model` and `cxrg ground` use: settings through cxrg.config, options through
    cxrg.loading (shortcuts: --dtype/--lut/--embeddings, given to the models that declare them; pairs: -o).
    `cfg`: the configuration the caller already read with the same weights and device (else read here)."""
    from cxrg.config import load_config
    from cxrg.loading import load_models

    cfg = cfg or load_config(cli={"weights": weights, "device": device})
    loaded, _, used = load_models([name], cfg, cfg.get("weights"), cfg.get("device", "cpu"), pairs or {},
                                  shortcuts)
    return Model(loaded[name], used.get(name, {}), cfg.get("weights"))


def load_model(name: str, weights: str | Path | None = None, device: str | None = None,
               dtype: str | None = None, **options: Any) -> Model:
    """Load a model by its id (`cxrg models list`), e.g. load_model("ldm-frozen", weights="w/",
    dtype="bfloat16", inference_steps=50). Unset values come from cxrg.toml and the environment as on the
    command line; an option the model does not declare is refused (`cxrg models info NAME` lists them)."""
    return open_model(name, weights, device, {"dtype": dtype},
                      {name: {k: v for k, v in options.items() if v is not None}} if options else {})


def ground(image: Any, phrase: str, model: str | Model = "prior", exact: bool = False,
           **kw: Any) -> Grounding:
    """One call: load `model` (keyword arguments as load_model's) and ground `phrase` on `image`."""
    loaded = model if isinstance(model, Model) else load_model(model, **kw)
    return loaded.ground(image, phrase, exact)


def demo_image() -> Path:
    """A real chest radiograph to try things on (`cxrg demo-image`: RG1_UNCR.dcm from pydicom-data, MIT)."""
    from cxrg.demo import demo_image_path

    return demo_image_path()


# ------------------------------------------------------------------------------------------ bench runs


class Run:
    """A `cxrg bench` run folder: `summary` (per model, class and metric: mean and 95 % CI) and
    `per_sample` (one row per model and sample) as lists of dicts, `config`, `to_pandas()`, `report()`."""

    NUMBERS = ("cnr", "miou", "seconds", "mean", "ci_low", "ci_high")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        config = self.path / "config.json"
        if not config.is_file():
            raise InputError("not a bench run folder (no config.json)", where=str(self.path),
                             hint="give the --out folder of `cxrg bench`")
        try:
            self.config: dict[str, Any] = json.loads(config.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"config.json is not valid JSON: {exc}", where=str(config)) from exc

    def __repr__(self) -> str:
        return f"<cxrg bench run {self.path}: {', '.join(self.models)} on {self.config.get('dataset')}>"

    @property
    def models(self) -> list[str]:
        return list(self.config.get("models", []))

    @property
    def summary(self) -> list[dict[str, Any]]:
        """summary.json's rows: model, category (a class or "Average"), metric, mean, ci_low, ci_high, n."""
        path = self.path / "summary.json"
        if not path.is_file():
            raise InputError("the run has no summary.json: it did not finish", where=str(self.path),
                             hint="rerun the same `cxrg bench` command to resume it")
        rows = json.loads(path.read_text(encoding="utf-8")).get("rows", [])
        return [{k: _number(v) if k in self.NUMBERS else v for k, v in row.items()} for row in rows]

    @property
    def per_sample(self) -> list[dict[str, Any]]:
        """per_sample.csv's rows; cnr, miou and seconds as floats (None where undefined)."""
        path = self.path / "per_sample.csv"
        if not path.is_file():
            return []
        with path.open(newline="", encoding="utf-8") as handle:
            return [{k: _number(v) if k in self.NUMBERS else v for k, v in row.items()}
                    for row in csv.DictReader(handle)]

    def to_pandas(self, table: str = "per_sample"):
        """A pandas DataFrame of `per_sample` or `summary` (pandas is not a dependency of cxrg)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise UsageError("pandas is not installed", hint="pip install pandas") from exc
        if table not in ("per_sample", "summary"):
            raise UsageError(f"unknown table {table!r}", hint="per_sample or summary")
        return pd.DataFrame(getattr(self, table))

    def report(self, embed: bool = False, progress: bool = True) -> Path:
        """Write (or rewrite) RUN/report.html and return its path (`cxrg report`)."""
        from cxrg.progress import progress as shown
        from cxrg.report import write_report

        with shown("report", unit="samples", enabled=progress) as bar:
            return write_report(self.path, embed=embed,
                                progress=lambda done, total: bar.update(done=done, total=total))

    def plot(self, path: str | Path | None = None):
        """The per-class means with their CIs (results.png's chart) as a matplotlib figure."""
        from cxrg.bench.reports import chart_figure

        data = json.loads((self.path / "summary.json").read_text(encoding="utf-8"))
        fig = chart_figure(data)
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def _repr_markdown_(self) -> str:
        results = self.path / "results.md"
        return results.read_text(encoding="utf-8") if results.is_file() else repr(self)


def _number(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(number) else number


def read_run(path: str | Path) -> Run:
    """Open a `cxrg bench` run folder (its --out)."""
    return Run(path)


def bench(models: str | Sequence[str], dataset: str, annotations: str | Path | None = None,
          images: str | Path | None = None, out: str | Path | None = None, *,
          weights: str | Path | None = None, device: str | None = None, resamples: int = 10_000,
          seed: int = 0, limit: int | None = None,
          split: str | None = None, strict: bool = False, lut: str | Path | None = None,
          dtype: str | None = None, embeddings: str | Path | None = None, extractor: str | None = None,
          options: Sequence[str] | dict[str, Any] | None = None, save_heatmaps: bool = True,
          heatmap_size: int = 256, prompt_text: str = "standardised", report: bool | None = None,
          exact_prompt: bool = False, restart: bool = False, progress: bool = True,
          protocol: str | None = None, choices: dict[str, Any] | None = None,
          batch_size: int | str | None = None) -> Run:
    """`cxrg bench` (the same arguments; `options` as -o: ["key=value", "model.key=value"] or a dict) ->
    the Run. Unset dataset paths come from cxrg.toml; rerunning into the same `out` resumes. `protocol`
    ("paper", the default, or "cxrg") and `choices` (one protocol choice by name) as --protocol and the
    per-choice flags (cxrg.protocol); `batch_size` as --batch-size (images per model call)."""
    from cxrg.bench.runner import run as run_bench
    from cxrg.config import load_config
    from cxrg.runs import say

    names = models if isinstance(models, str) else ",".join(models)
    pairs = [f"{k}={v}" for k, v in options.items()] if isinstance(options, dict) else options
    cfg = load_config(cli={"weights": weights, "device": device})
    result = run_bench(cfg, names, dataset, _path(annotations), _path(images), _path(out), resamples, seed,
                       limit, split, strict, extractor, pairs,
                       {"lut": _path(lut), "dtype": dtype, "embeddings": _path(embeddings)},
                       save_heatmaps, heatmap_size, prompt_text, progress=progress, exact_prompt=exact_prompt,
                       restart=restart, protocol=protocol, choices=choices, batch_size=batch_size)
    folder = result.run.path
    if not result.summary:  # a process other than rank 0 of a sharded run: rank 0 reports
        return Run(folder)
    pairs_scored = len(result.rows)
    if report is None:
        report = save_heatmaps and pairs_scored <= REPORT_AUTO_PAIRS
    if report and save_heatmaps:
        say(f"report: {Run(folder).report(progress=progress)}")
    elif report is None or pairs_scored > REPORT_AUTO_PAIRS:
        say(f"report: not written for {pairs_scored} (model, sample) pairs; run `cxrg report {folder}`")
    say(f"results in {folder}")
    return Run(folder)


def _is_dicom_dataset(image: Any) -> bool:
    """A pydicom Dataset (kept on the Grounding so that to_dicom_seg can reference it)."""
    return type(image).__module__.startswith("pydicom") and hasattr(image, "SOPInstanceUID")


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None
