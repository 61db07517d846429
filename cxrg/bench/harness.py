"""Score models on a dataset: per-sample CNR and mIoU, then per-class bootstrap statistics.

The loop is sample-major (each image is read once and shown to every model). Finished (model, sample)
pairs are written to RUN_DIR/per_sample.csv as they come (atomically, at most every few seconds), so a
rerun with the same RUN_DIR resumes; pairs that ended in an error are tried again. A failed sample is
recorded with its error and left out of the statistics; the summary counts them.

Every row carries a `fingerprint` of what determined it (the sample: id, image path and file identity,
boxes, prompt, class; the model: name, card version, weights, options and settings; the metric version;
the cxrg version). On a rerun, a finished row is kept only when its fingerprint is the one the current
inputs give; every other row is recomputed (docs/decisions.md, "Resume and changed inputs").
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.bench import bootstrap, metrics
from cxrg.bench.datasets import Dataset, Sample
from cxrg.bench.heatmap_store import HeatmapStore
from cxrg.bench.shards import Ranks, finish, fold_in, heartbeat, mine, remove_shards, shard_path
from cxrg.errors import CxrgError, NoPrediction, UsageError
from cxrg.registry import HeatmapModel, batched_heatmaps, make_query
from cxrg.runs import (
    Interrupted,
    RunDir,
    atomic_write_csv,
    file_fingerprint,
    fingerprint,
    format_number,
    is_contained,
    read_csv_dicts,
)

PER_SAMPLE_FIELDS = ("model", "sample_id", "category", "prompt", "phrase", "status", "cnr", "miou", "seconds",
                     "error", "fingerprint")
METRIC_VERSION = "cnr+miou(0.1..0.5)/minmax/v2"
"""Changes whenever the scoring of a map changes (thresholds, normalisation, NaN policy): rows scored under
another version are recomputed on resume."""
FLUSH_SECONDS = 5.0
SCORED, UNDEFINED, NO_PREDICTION, FAILED = "scored", "undefined", "no-prediction", "failed"
STATUSES = (SCORED, UNDEFINED, NO_PREDICTION, FAILED)
"""Per (model, sample): scored (every metric the model reports is a number), undefined (scored, but a metric
is undefined, e.g. CNR of a map with no contrast), no-prediction (the model answered without a map, e.g.
MAIRA-2 without a box), failed (an error: the image, the row or the model). Only scored and undefined rows
enter the statistics (undefined values themselves are left out and counted); failed rows are retried on a
rerun."""
FINISHED = (SCORED, UNDEFINED, NO_PREDICTION)


@dataclass
class BenchResult:
    run: RunDir
    rows: dict[tuple[str, str], dict[str, str]]
    summary: dict[str, Any]
    model_errors: dict[str, str] = field(default_factory=dict)


def read_per_sample(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = {(row["model"], row["sample_id"]): row for row in read_csv_dicts(handle)}
    for row in rows.values():
        if not row.get("status"):  # a cxrg 0.1 file: the status was implied by the error text
            error = row.get("error") or ""
            row["status"] = (NO_PREDICTION if error.startswith("no prediction") else FAILED if error
                             else UNDEFINED if not (row.get("cnr") or row.get("miou")) else SCORED)
    return rows


def model_prompt(model: Any, sample: Sample) -> str:
    """What a model is asked: the vocabulary reading for a model whose card takes vocabulary prompts, the
    dataset's text otherwise (ModelCard.prompts)."""
    card = getattr(model, "card", None)
    if getattr(card, "prompts", "free-text") == "vocabulary" and sample.vocabulary_prompt:
        return sample.vocabulary_prompt
    return sample.prompt


def _row(name: str, sample: Sample, model: Any = None) -> dict[str, str]:
    return {"model": name, "sample_id": sample.sample_id, "category": sample.category,
            "prompt": model_prompt(model, sample), "phrase": sample.phrase, "status": FAILED, "cnr": "",
            "miou": "", "seconds": "", "error": "", "fingerprint": ""}


def _error_text(exc: BaseException) -> str:
    return exc.one_line() if isinstance(exc, CxrgError) else f"{type(exc).__name__}: {exc}"


def sample_fingerprint(sample: Sample) -> str:
    """What of a sample determines its row: id, image path and file identity (size and modification time),
    stated size, boxes, prompt, phrase, class and any row error."""
    return fingerprint({
        "id": sample.sample_id, "image": str(sample.image_path) if sample.image_path else None,
        "file": file_fingerprint(sample.image_path) if sample.image_path else None,
        "size": sample.image_size, "boxes": np.asarray(sample.boxes, dtype=np.float64).tolist(),
        "prompt": sample.prompt, "vocabulary_prompt": sample.vocabulary_prompt, "phrase": sample.phrase,
        "category": sample.category, "error": sample.error})


def row_fingerprint(model_fingerprint: str, sample: Sample) -> str:
    from cxrg import __version__

    return fingerprint([model_fingerprint, sample_fingerprint(sample), METRIC_VERSION, __version__])


def score_heatmap(model: HeatmapModel, sample: Sample, image: np.ndarray, heatmap: Any,
                  store: HeatmapStore | None, row: dict[str, str]) -> dict[str, str]:
    """Fill a row from a model's heatmap (or the exception it raised instead)."""
    try:
        if isinstance(heatmap, BaseException):
            raise heatmap
        heatmap = np.asarray(heatmap)
        if heatmap.shape != image.shape:
            raise CxrgError(f"heatmap shape {heatmap.shape} differs from the image's {image.shape}")
        scored = metrics.normalise(heatmap)
        cnr_value, miou_value = metrics.score(scored, sample.boxes)
        if store is not None:
            store.save(row["model"], sample.sample_id, scored)
        reported = [v for name, v in (("cnr", cnr_value), ("miou", miou_value)) if name in model.card.metrics]
        if "cnr" in model.card.metrics:
            row["cnr"] = format_number(cnr_value)
        if "miou" in model.card.metrics:
            row["miou"] = format_number(miou_value)
        row["status"] = SCORED if all(math.isfinite(v) for v in reported) else UNDEFINED
    except NoPrediction as exc:
        row["status"], row["error"] = NO_PREDICTION, exc.one_line()
    except BaseException as exc:  # one sample's failure (even a plugin's SystemExit) must not stop the run
        if not is_contained(exc):
            raise
        row["status"], row["error"] = FAILED, _error_text(exc)
    return row


def score_samples(model: HeatmapModel, samples: Sequence[Sample], image: np.ndarray,
                  store: HeatmapStore | None = None, name: str | None = None) -> list[dict[str, str]]:
    """Rows of several samples of one image. A model with `heatmaps(queries)` (the optional batched part
    of the protocol; the LDM inverts the image once for all of them) gets them in one call; if that call
    raises, each sample is tried on its own so that the error lands on the sample that caused it. Rows are
    stored under `name` (the entry-point name, a model's identity; default: its card's name)."""
    name = name or model.card.name
    started = time.perf_counter()
    queries = [make_query(model.card, image, model_prompt(model, s), s.boxes, s.image_path) for s in samples]
    maps = batched_heatmaps(model, queries) if len(samples) > 1 else None
    rows = []
    for k, (sample, query) in enumerate(zip(samples, queries, strict=True)):
        if maps is not None:
            heatmap: Any = maps[k]
        else:
            started = time.perf_counter()
            try:
                heatmap = model.heatmap(query)
            except BaseException as exc:
                if not is_contained(exc):
                    raise
                heatmap = exc
        row = score_heatmap(model, sample, image, heatmap, store, _row(name, sample, model))
        elapsed = (time.perf_counter() - started) / (len(samples) if maps is not None else 1)
        row["seconds"] = f"{elapsed:.4f}"
        rows.append(row)
    return rows


def score_batch(model: HeatmapModel, work: Sequence[tuple[Sequence[Sample], np.ndarray]],
                store: HeatmapStore | None = None, name: str | None = None) -> list[list[dict[str, str]]]:
    """Rows of several images' samples (`work`: (samples, image) per image) with one batched call: a model
    with `heatmaps(queries)` gets every query of every image at once (the LDM inverts the images together
    and batches all their prompts). If that call raises, each image is scored on its own (score_samples,
    which then tries each sample alone), so a failing image or sample fails alone and the rest is scored.
    One image, or a model without `heatmaps`, is exactly score_samples image by image."""
    name = name or model.card.name
    if len(work) < 2 or not callable(getattr(model, "heatmaps", None)):
        return [score_samples(model, samples, image, store, name) for samples, image in work]
    started = time.perf_counter()
    queries = [[make_query(model.card, image, model_prompt(model, s), s.boxes, s.image_path) for s in samples]
               for samples, image in work]
    flat = [q for group in queries for q in group]
    maps = batched_heatmaps(model, flat)
    if maps is None:
        return [score_samples(model, samples, image, store, name) for samples, image in work]
    elapsed = f"{(time.perf_counter() - started) / len(flat):.4f}"
    out, k = [], 0
    for samples, image in work:
        rows = []
        for sample in samples:
            row = score_heatmap(model, sample, image, maps[k], store, _row(name, sample, model))
            row["seconds"] = elapsed
            rows.append(row)
            k += 1
        out.append(rows)
    return out


def _load_image(sample: Sample) -> np.ndarray:
    from cxrg.images import read_annotated_image

    if sample.error or sample.image_path is None:
        raise CxrgError(sample.error or "the sample has no image path")
    return read_annotated_image(sample.image_path, sample.image_size)


def run_benchmark(models: dict[str, HeatmapModel], dataset: Dataset, run: RunDir, resamples: int,
                  seed: int, limit: int | None = None, model_errors: dict[str, str] | None = None,
                  progress: Callable[[int], Any] | None = None,
                  store: HeatmapStore | None = None,
                  model_fingerprints: dict[str, str] | None = None,
                  ranks: Ranks | None = None, batch_size: int = 1) -> BenchResult:
    """Score every model on every sample (resuming), write per_sample.csv and return the statistics.
    With a `store`, every scored map is also kept in RUN_DIR/heatmaps/ (see heatmap_store).
    `model_fingerprints` (name -> identity of the model: version, weights, options) enter each row's
    fingerprint; a finished row whose fingerprint differs from the current one is recomputed. A Ctrl-C
    writes what is finished and raises Interrupted ("N of M done").

    `ranks` (several processes, see cxrg.bench.shards): this process scores its share of the images with
    work left into its shard; rank 0 then waits for every shard, merges them into per_sample.csv and
    returns the statistics; the other ranks return their own rows and an empty summary. Rank 0 must have
    folded old shards into per_sample.csv (shards.fold_in) before any process gets here.

    `batch_size` images (with their prompts) go to a model at once (score_batch): the rows, their order,
    the fingerprints and the resume rule do not depend on it; a failing image fails alone."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    ranks = ranks or Ranks()
    samples = dataset.samples[:limit] if limit is not None else dataset.samples
    fingerprints = model_fingerprints or {}
    expected = {(name, s.sample_id): row_fingerprint(fingerprints.get(name, name), s)
                for name in models for s in samples}
    per_sample_path = run.file("per_sample.csv")
    if not ranks.sharded:
        fold_in(run.path, per_sample_path.name, PER_SAMPLE_FIELDS, read_per_sample)
    rows = read_per_sample(per_sample_path)
    finished = {key for key, row in rows.items() if row.get("status") in FINISHED and key in expected}
    done = {key for key in finished if rows[key].get("fingerprint") == expected[key]}
    if rows:
        run.logger.info("resuming: %d finished (model, sample) pairs found", len(finished))
    stale = sorted(finished - done)
    if stale:
        run.logger.warning("recomputing %d finished pairs whose inputs changed (annotations, image files, "
                           "model weights, options or settings): %s", len(stale),
                           ", ".join(f"{m} {s}" for m, s in stale[:20]) + (" ..." if len(stale) > 20 else ""))
        if ranks.main:
            print(f"cxrg: {len(stale)} finished (model, sample) pairs recomputed: their inputs changed since "
                  "they were scored (details in log.txt)", file=sys.stderr, flush=True)
    groups = image_groups(samples)
    if ranks.sharded:
        left = [g for g in groups if any((n, s.sample_id) not in done for n in models for s in g)]
        groups = mine(left, ranks)
        out_rows: dict[tuple[str, str], dict[str, str]] = {}
        out_path = shard_path(run.path, "per_sample", ranks.rank, ranks.world)
        run.logger.info("%s: %d of %d images with work left", ranks.label(), len(groups), len(left))
    else:
        out_rows, out_path = rows, per_sample_path
    last_flush = time.monotonic()

    def flush() -> None:
        atomic_write_csv(out_path, PER_SAMPLE_FIELDS, out_rows.values())

    try:
        with heartbeat(run.path, "per_sample", ranks) if ranks.sharded else contextlib.nullcontext():
            for start in range(0, len(groups), batch_size):
                batch = groups[start:start + batch_size]
                todo = [{name: [s for s in group if (name, s.sample_id) not in done] for name in models}
                        for group in batch]
                images: list[np.ndarray | None] = []
                errors: list[str] = []
                for group, wanted in zip(batch, todo, strict=True):
                    image, error = None, ""
                    if any(wanted.values()):
                        try:
                            image = _load_image(group[0])
                        except Exception as exc:
                            error = _error_text(exc)
                    images.append(image)
                    errors.append(error)
                computed: dict[tuple[int, str], list[dict[str, str]]] = {}
                for name, model in models.items():
                    work = [(k, todo[k][name], image) for k, image in enumerate(images)
                            if todo[k][name] and image is not None]
                    got = score_batch(model, [(samples, image) for _, samples, image in work], store, name)
                    computed.update({(k, name): rows for (k, _, _), rows in zip(work, got, strict=True)})
                for k, group in enumerate(batch):
                    for name, model in models.items():
                        if not todo[k][name]:
                            continue
                        failed = [{**_row(name, s, model), "seconds": "0", "error": errors[k]}
                                  for s in todo[k][name]]
                        new_rows = computed.get((k, name)) or failed
                        for sample, row in zip(todo[k][name], new_rows, strict=True):
                            row["fingerprint"] = expected[(name, sample.sample_id)]
                            if row["error"]:
                                run.logger.warning("%s %s: %s: %s", row["model"], sample.sample_id,
                                                   row["status"], row["error"])
                            out_rows[(name, sample.sample_id)] = row
                    if progress is not None:
                        progress(len(group))
                if time.monotonic() - last_flush > FLUSH_SECONDS:
                    flush()
                    last_flush = time.monotonic()
    except KeyboardInterrupt:
        flush()
        if ranks.sharded:
            complete = sum(1 for g in groups for s in g
                           if all(out_rows.get((n, s.sample_id), {}).get("status") in FINISHED
                                  or (n, s.sample_id) in done for n in models))
            total = sum(len(g) for g in groups)
            run.logger.warning("interrupted: %s: %d of its %d samples done", ranks.label(), complete, total)
            raise Interrupted(f"interrupted: {ranks.label()}: {complete} of its {total} samples done; its "
                              "shard is kept; rerun the same command (any number of processes) to resume"
                              ) from None
        complete = sum(1 for s in samples
                       if all(rows.get((n, s.sample_id), {}).get("status") in FINISHED for n in models))
        run.logger.warning("interrupted: %d of %d samples done", complete, len(samples))
        raise Interrupted(f"interrupted: {complete} of {len(samples)} samples done; rerun the same command "
                          "to resume") from None
    finally:
        flush()
    if ranks.sharded:
        owed = [(n, s.sample_id) for g in left for n in models for s in g if (n, s.sample_id) not in done]
        merged = finish(run.path, "per_sample", ranks, len(out_rows), read_per_sample, owed, run.logger)
        if merged is None:
            return BenchResult(run, out_rows, {}, model_errors or {})
        rows.update(merged)
        rows = canonical_order(rows, list(models), samples)
        atomic_write_csv(per_sample_path, PER_SAMPLE_FIELDS, rows.values())
        remove_shards(run.path, "per_sample")
        run.logger.info("merged the shards of %d processes into %s", ranks.world, per_sample_path.name)
    summary = summarise(list(models), samples, rows, resamples, seed, model_errors or {})
    return BenchResult(run, rows, summary, model_errors or {})


def canonical_order(rows: dict[tuple[str, str], dict[str, str]], model_names: Sequence[str],
                    samples: Sequence[Sample]) -> dict[tuple[str, str], dict[str, str]]:
    """Rows in the order a fresh one-process run writes them (image by image, model by model, sample by
    sample), then any other rows (e.g. beyond today's --limit) in their old order."""
    keys = [(name, s.sample_id) for group in image_groups(samples) for name in model_names for s in group]
    ordered = {key: rows[key] for key in keys if key in rows}
    ordered.update((key, row) for key, row in rows.items() if key not in ordered)
    return ordered


def image_groups(samples: Sequence[Sample]) -> list[list[Sample]]:
    """Samples grouped by image file (in order of first appearance), so an image is read once and a model
    that batches per image (the LDM's inversion) does it once for all of the image's prompts. A sample
    whose row is broken (an error before any image) is a group of its own."""
    groups: dict[object, list[Sample]] = {}
    for sample in samples:
        key = (sample.image_path, sample.image_size) if not sample.error else ("error", sample.sample_id)
        groups.setdefault(key, []).append(sample)
    return list(groups.values())


MIOU_NO_BOX_ZERO = "miou_no_box_0"
"""mIoU with every "no prediction" (a MAIRA-2 answer without a box) scored 0 instead of left out: the
second way of reporting the paper's Table 3 (protocol choice no_prediction: both ways, always)."""


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
        failed = sum(1 for r in model_rows if r is None or r.get("status") not in (SCORED, UNDEFINED))
        undefined = sum(1 for r in model_rows if r is not None and r.get("status") == UNDEFINED)
        counts[name] = {"samples": len(samples), "scored": len(samples) - failed - undefined,
                        "failed": failed}
        if undefined:  # a metric without a value (an all-NaN or flat map): not "scored", not failed either
            counts[name]["undefined"] = undefined
        silent = [s.category for s, r in zip(samples, model_rows, strict=True)
                  if r is not None and r.get("status") == NO_PREDICTION]
        if silent:
            counts[name]["no_prediction"] = len(silent)
            counts[name]["no_prediction_by_class"] = {c: silent.count(c) for c in sorted(set(silent))}
        for metric in ("cnr", "miou"):
            values = {c: np.array([_value(rows.get((name, s.sample_id)), metric) for s in members])
                      for c, members in by_class.items()}
            if all(np.isnan(v).all() for v in values.values()):
                continue  # the model does not report this metric (or every sample failed)
            scored = len(samples) - failed  # rows that entered the statistics (scored or undefined)
            finite = int(sum(np.isfinite(v).sum() for v in values.values()))
            counts[name][f"{metric}_undefined"] = scored - finite
            stats = bootstrap.bootstrap_classes(values, resamples, seed, indices_by_class=indices)
            for category, interval in stats.items():
                table.append({"model": name, "category": category, "metric": metric, "mean": interval.mean,
                              "ci_low": interval.low, "ci_high": interval.high, "n": interval.n})
            if metric == "miou" and silent:  # Table 3 both ways: excluded (above, counted) and as mIoU 0
                zeroed = {c: np.array([0.0 if (r := rows.get((name, s.sample_id))) is not None
                                       and r.get("status") == NO_PREDICTION else _value(r, metric)
                                       for s in members]) for c, members in by_class.items()}
                stats = bootstrap.bootstrap_classes(zeroed, resamples, seed, indices_by_class=indices)
                for category, interval in stats.items():
                    table.append({"model": name, "category": category, "metric": MIOU_NO_BOX_ZERO,
                                  "mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high,
                                  "n": interval.n})
    return {"rows": table, "counts": counts, "model_errors": model_errors, "resamples": resamples,
            "class_sizes": {c: len(members) for c, members in sorted(by_class.items())},
            "seed": seed, "level": 0.95, "n_samples": len(samples),
            "categories": sorted(by_class)}


def _value(row: dict[str, str] | None, metric: str) -> float:
    if row is None or row.get("status") not in (SCORED, UNDEFINED) or not row.get(metric):
        return float("nan")
    return float(row[metric])
