"""Score models on a dataset: per-sample CNR and mIoU, then per-class bootstrap statistics.

The loop is sample-major (each image is read once and shown to every model). Finished (model, sample)
pairs are written to RUN_DIR/per_sample.csv as they come (atomically, at most every few seconds), so a
rerun with the same RUN_DIR resumes; pairs that ended in an error are tried again. A failed sample is
recorded with its error and left out of the statistics; the summary counts them.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.bench import bootstrap, metrics
from cxrg.bench.datasets import Dataset, Sample
from cxrg.bench.heatmap_store import HeatmapStore
from cxrg.errors import CxrgError, NoPrediction
from cxrg.registry import HeatmapModel, make_query
from cxrg.runs import RunDir, atomic_write_csv

PER_SAMPLE_FIELDS = ("model", "sample_id", "category", "prompt", "cnr", "miou", "seconds", "error")
FLUSH_SECONDS = 5.0
NO_PREDICTION = "no prediction"


@dataclass
class BenchResult:
    run: RunDir
    rows: dict[tuple[str, str], dict[str, str]]
    summary: dict[str, Any]
    model_errors: dict[str, str] = field(default_factory=dict)


def _format(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


def read_per_sample(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {(row["model"], row["sample_id"]): row for row in csv.DictReader(handle)}


def score_sample(model: HeatmapModel, sample: Sample, image: np.ndarray,
                 store: HeatmapStore | None = None) -> dict[str, str]:
    """One (model, sample) pair -> a per_sample row. A model error becomes the row's error. With a
    `store`, the map as scored is kept (reduced) for the report and the reader study."""
    started = time.perf_counter()
    row = {"model": model.card.name, "sample_id": sample.sample_id, "category": sample.category,
           "prompt": sample.prompt, "cnr": "", "miou": "", "error": ""}
    try:
        query = make_query(model.card, image, sample.prompt, sample.boxes, sample.image_path)
        heatmap = np.asarray(model.heatmap(query))
        if heatmap.shape != image.shape:
            raise CxrgError(f"heatmap shape {heatmap.shape} differs from the image's {image.shape}")
        scored = metrics.normalise(heatmap)
        cnr_value, miou_value = metrics.score(scored, sample.boxes)
        if store is not None:
            store.save(model.card.name, sample.sample_id, scored)
        if "cnr" in model.card.metrics:
            row["cnr"] = _format(cnr_value)
        if "miou" in model.card.metrics:
            row["miou"] = _format(miou_value)
    except NoPrediction as exc:
        text = exc.one_line()
        row["error"] = text if text.startswith(NO_PREDICTION) else f"{NO_PREDICTION}: {text}"
    except CxrgError as exc:
        row["error"] = exc.one_line()
    except Exception as exc:  # one sample's failure must not stop the run
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = f"{time.perf_counter() - started:.4f}"
    return row


def _load_image(sample: Sample) -> np.ndarray:
    from cxrg.images import read_annotated_image

    if sample.error or sample.image_path is None:
        raise CxrgError(sample.error or "the sample has no image path")
    return read_annotated_image(sample.image_path, sample.image_size)


def run_benchmark(models: dict[str, HeatmapModel], dataset: Dataset, run: RunDir, resamples: int,
                  seed: int, limit: int | None = None, model_errors: dict[str, str] | None = None,
                  progress: Callable[[int], Any] | None = None,
                  store: HeatmapStore | None = None) -> BenchResult:
    """Score every model on every sample (resuming), write per_sample.csv and return the statistics.
    With a `store`, every scored map is also kept in RUN_DIR/heatmaps/ (see heatmap_store)."""
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    per_sample_path = run.file("per_sample.csv")
    rows = read_per_sample(per_sample_path)
    sample_ids = {s.sample_id for s in samples}
    done = {key for key, row in rows.items() if not row.get("error") and key[1] in sample_ids}
    if rows:
        run.logger.info("resuming: %d finished (model, sample) pairs found", len(done))
    last_flush = time.monotonic()

    def flush() -> None:
        atomic_write_csv(per_sample_path, PER_SAMPLE_FIELDS, rows.values())

    cached: tuple[object, np.ndarray] | None = None
    try:
        for sample in by_image(samples):
            todo = [m for name, m in models.items() if (name, sample.sample_id) not in done]
            if todo:
                try:
                    key = (sample.image_path, sample.image_size, sample.error)
                    if cached is not None and cached[0] == key:
                        image = cached[1]  # the same image as the previous sample: read once
                    else:
                        image = _load_image(sample)
                        cached = (key, image)
                except CxrgError as exc:
                    image, error = None, exc.one_line()
                except Exception as exc:
                    image, error = None, f"{type(exc).__name__}: {exc}"
                for model in todo:
                    if image is None:
                        row = {"model": model.card.name, "sample_id": sample.sample_id,
                               "category": sample.category, "prompt": sample.prompt, "cnr": "", "miou": "",
                               "seconds": "0", "error": error}
                    else:
                        row = score_sample(model, sample, image, store)
                    if row["error"]:
                        run.logger.warning("%s %s: %s", row["model"], sample.sample_id, row["error"])
                    rows[(row["model"], sample.sample_id)] = row
            if progress is not None:
                progress(1)
            if time.monotonic() - last_flush > FLUSH_SECONDS:
                flush()
                last_flush = time.monotonic()
    finally:
        flush()
    summary = summarise(list(models), samples, rows, resamples, seed, model_errors or {})
    return BenchResult(run, rows, summary, model_errors or {})


def by_image(samples: Sequence[Sample]) -> list[Sample]:
    """Samples grouped by image (in order of first appearance), so an image is read once and a model that
    caches per-image work (the LDM's inversion) does it once for all of the image's prompts."""
    groups: dict[object, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.image_path or sample.sample_id, []).append(sample)
    return [s for group in groups.values() for s in group]


def summarise(model_names: Sequence[str], samples: Sequence[Sample], rows: dict[tuple[str, str], dict],
              resamples: int, seed: int, model_errors: dict[str, str]) -> dict[str, Any]:
    """Per model, class and metric: mean, percentile CI, n; counts of failures and undefined values."""
    by_class: dict[str, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.category, []).append(sample)
    indices = bootstrap.shared_indices({c: len(v) for c, v in by_class.items()}, resamples, seed)
    table: list[dict[str, Any]] = []
    counts: dict[str, dict[str, Any]] = {}
    for name in model_names:
        model_rows = [rows.get((name, s.sample_id)) for s in samples]
        failed = sum(1 for r in model_rows if r is None or r.get("error"))
        counts[name] = {"samples": len(samples), "scored": len(samples) - failed, "failed": failed}
        silent = [s.category for s, r in zip(samples, model_rows, strict=True)
                  if r is not None and r.get("error", "").startswith(NO_PREDICTION)]
        if silent:
            counts[name]["no_prediction"] = len(silent)
            counts[name]["no_prediction_by_class"] = {c: silent.count(c) for c in sorted(set(silent))}
        for metric in ("cnr", "miou"):
            values = {c: np.array([_value(rows.get((name, s.sample_id)), metric) for s in members])
                      for c, members in by_class.items()}
            if all(np.isnan(v).all() for v in values.values()):
                continue  # the model does not report this metric (or every sample failed)
            scored = len(samples) - failed
            finite = int(sum(np.isfinite(v).sum() for v in values.values()))
            counts[name][f"{metric}_undefined"] = scored - finite
            stats = bootstrap.bootstrap_classes(values, resamples, seed, indices_by_class=indices)
            for category, interval in stats.items():
                table.append({"model": name, "category": category, "metric": metric, "mean": interval.mean,
                              "ci_low": interval.low, "ci_high": interval.high, "n": interval.n})
    return {"rows": table, "counts": counts, "model_errors": model_errors, "resamples": resamples,
            "seed": seed, "level": 0.95, "n_samples": len(samples),
            "categories": sorted(by_class)}


def _value(row: dict[str, str] | None, metric: str) -> float:
    if row is None or row.get("error") or not row.get(metric):
        return float("nan")
    return float(row[metric])
