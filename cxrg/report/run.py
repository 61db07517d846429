"""Read a finished (or interrupted) bench run folder into what the report shows.

A bench run folder holds config.json (the command's settings: dataset, annotations, images, split, limit),
per_sample.csv (one row per model and sample: CNR, mIoU, seconds, error), summary.json (per-class means and
bootstrap CIs) and heatmaps/ (the scored maps, see cxrg.bench.heatmap_store). The dataset itself (phrases,
boxes, image files) is read again from the annotations named in config.json, the way `cxrg bench` read it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import CxrgError, InputError

NOT_SCORED = "not scored"


@dataclass
class ReportSample:
    sample_id: str
    category: str
    prompt: str
    phrase: str
    """The phrase as the dataset wrote it (MS-CXR-loc: before the rewrite to the prompt format)."""
    image_path: Path | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    """xyxy at pixel edges, original image pixels."""
    image_size: tuple[int, int] | None = None
    error: str = ""
    """Why the dataset could not make this row a usable sample (then every model failed on it)."""


@dataclass
class RunData:
    path: Path
    config: dict[str, Any]
    dataset: str
    models: list[str]
    samples: list[ReportSample]
    rows: dict[tuple[str, str], dict[str, str]]
    summary: dict[str, Any] | None
    model_errors: dict[str, str]
    notes: list[str] = field(default_factory=list)
    """What the reader could not do (annotations gone, no summary, ...), shown at the top of the report."""
    written: str = ""

    def status(self, model: str, sample_id: str) -> tuple[str, str]:
        """("ok" | "failed" | "skipped", reason) of one (model, sample) pair."""
        row = self.rows.get((model, sample_id))
        if row is None:
            if model in self.model_errors:
                return "skipped", f"model not run: {self.model_errors[model]}"
            return "skipped", f"{NOT_SCORED}: no row in per_sample.csv (the run stopped before this sample)"
        if row.get("error"):
            return "failed", row["error"]
        return "ok", ""


def metric_value(row: dict[str, str] | None, metric: str) -> float:
    if row is None or row.get("error") or not row.get(metric):
        return math.nan
    try:
        return float(row[metric])
    except ValueError:
        return math.nan


def read_run(run_dir: Path, annotations: Path | None = None, images: Path | None = None) -> RunData:
    """Everything the report needs from RUN_DIR; `annotations`/`images` override config.json's paths (a run
    folder copied to another machine). A missing dataset is a note, not an error: metrics still show."""
    from cxrg.bench.harness import read_per_sample

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"run folder not found: {run_dir}",
                         hint="give the --out folder of a `cxrg bench` run")
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise InputError("not a bench run folder: no config.json", where=str(run_dir),
                         hint="give the --out folder of a `cxrg bench` run")
    try:
        stored = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"config.json is not valid JSON: {exc}", where=str(config_path)) from exc
    if not isinstance(stored, dict) or stored.get("command") != "bench":
        raise InputError(f"not a bench run folder: config.json is from `{stored.get('command', '?')}`"
                         if isinstance(stored, dict) else "config.json is not an object", where=str(run_dir))
    config = dict(stored.get("config") or {})
    per_sample = run_dir / "per_sample.csv"
    if not per_sample.is_file():
        raise InputError("the run has no per_sample.csv yet (it scored nothing)", where=str(run_dir),
                         hint="run or resume `cxrg bench` with this --out first")
    try:
        rows = read_per_sample(per_sample)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"per_sample.csv is unreadable: {exc}", where=str(per_sample)) from exc

    notes: list[str] = []
    samples = _dataset_samples(run_dir, config, annotations, images, notes)
    limit = config.get("limit")
    if samples is not None and isinstance(limit, int):
        samples = samples[:limit]
    if samples is None:
        samples = []
    known = {s.sample_id for s in samples}
    for (_, sample_id), row in rows.items():
        if sample_id not in known:  # scored earlier with other settings, or no dataset at hand
            known.add(sample_id)
            samples.append(ReportSample(sample_id, row.get("category", ""), row.get("prompt", ""),
                                        row.get("prompt", "")))
    models = list(dict.fromkeys([*config.get("models", []), *(m for m, _ in rows)]))
    summary = _summary(run_dir, notes)
    model_errors = dict((summary or {}).get("model_errors") or {})
    if summary is None and rows:
        summary = _recompute_summary(models, samples, rows, config, model_errors)
    return RunData(run_dir, config, str(config.get("dataset", "")), models, samples, rows, summary,
                   model_errors, notes, str(stored.get("written", "")))


def _dataset_samples(run_dir: Path, config: dict[str, Any], annotations: Path | None, images: Path | None,
                     notes: list[str]) -> list[ReportSample] | None:
    from cxrg.bench.datasets import read_csv_rows, read_dataset

    name = str(config.get("dataset", ""))
    annotations = Path(annotations) if annotations else Path(config["annotations"]) if config.get(
        "annotations") else None
    images = Path(images) if images else Path(config["images"]) if config.get("images") else None
    read_as = name
    if name == "ms-cxr-loc":  # the rewritten CSV the run made and scored
        cached = sorted((run_dir / "ms-cxr-loc").glob("*_loc.csv"))
        annotations = cached[0] if cached else None
        read_as = "ms-cxr"
    if annotations is None or images is None:
        notes.append("the dataset is not at hand (no annotations in config.json): images and boxes are "
                     "left out")
        return None
    if not images.is_dir():
        notes.append(f"images folder not found: {images}: images and boxes are left out "
                     "(cxrg report --images DIR points at a moved copy)")
        return None
    try:
        dataset = read_dataset(read_as, annotations, images, split=config.get("split"))
    except CxrgError as exc:
        notes.append(f"the dataset could not be read ({exc.one_line()}): images and boxes are left out")
        return None
    phrases: dict[int, str] = {}
    if name == "ms-cxr-loc":
        source = read_csv_rows(annotations, ())
        phrases = {line: row.get("original_label_text", "") for line, row in enumerate(source, start=2)}
    out = []
    for s in dataset.samples:
        phrase = next((phrases[line] for line in s.rows if phrases.get(line)), s.prompt)
        out.append(ReportSample(s.sample_id, s.category, s.prompt, phrase, s.image_path, s.boxes,
                                s.image_size, s.error))
    return out


def _summary(run_dir: Path, notes: list[str]) -> dict[str, Any] | None:
    path = run_dir / "summary.json"
    if not path.is_file():
        notes.append("no summary.json (the run did not finish): the table is recomputed from per_sample.csv")
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        notes.append("summary.json is unreadable: the table is recomputed from per_sample.csv")
        return None
    for row in summary.get("rows", []):  # summary.json writes NaN as null
        for key in ("mean", "ci_low", "ci_high"):
            row[key] = math.nan if row.get(key) is None else float(row[key])
    return summary


def _recompute_summary(models: list[str], samples: list[ReportSample], rows: dict, config: dict[str, Any],
                       model_errors: dict[str, str]) -> dict[str, Any]:
    from cxrg.bench.harness import summarise

    resamples = int(config.get("resamples") or 10_000)
    as_samples: list[Any] = list(samples)  # summarise reads only sample_id and category
    return summarise(models, as_samples, rows, resamples, int(config.get("seed") or 0), model_errors)
