"""Classify every image of the cohort, resumably: one scores.csv row per (run, strategy).

Per image: read it, encode it, draw its (t, eps) pairs, run the U-Net for every (draw, class prompt) pair
(batched) to get per-position error maps, then weight them with each strategy's heatmap of each run's
location prompt. A row holds both class errors, the score (error of the healthy prompt minus error of the
pathology prompt: higher = more likely positive) and, for positives, the mIoU of that strategy's heatmap
against the boxes. Finished images are kept on a rerun; images that ended in an error are tried again.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrg.bench import metrics
from cxrg.bench.shards import Ranks, finish, fold_in, heartbeat, mine, remove_shards, shard_path
from cxrg.classify.data import Job, Run
from cxrg.classify.diffusion import (
    DrawSettings,
    class_weighted_error,
    draw_noise,
    error_maps,
    to_latent,
    weighted_error,
)
from cxrg.classify.heatmaps import HeatmapSource
from cxrg.errors import CxrgError
from cxrg.ldm.heatmap import LdmEngine
from cxrg.ldm.text import encode, tokenize
from cxrg.runs import RunDir, atomic_write_csv, read_csv_dicts

SCORE_FIELDS = ("unit", "kind", "label", "image", "prompt", "strategy", "error_healthy", "error_pathology",
                "score", "miou", "note", "seconds", "error")
FLUSH_SECONDS = 5.0
EMPTY_HEATMAP = "empty heatmap: uniform weights"


@dataclass
class Classifier:
    """The frozen LDM as a two-class diffusion classifier with heatmap-weighted errors."""

    engine: LdmEngine
    heatmaps: HeatmapSource
    healthy_prompt: str
    pathology_prompt: str
    draws: DrawSettings
    strategies: Sequence[str]
    seed: int = 0
    weighting: str = "per-class"
    """Eq. 8: "per-class" weights each class's error with its own heatmap (the healthy prompt's map for the
    healthy class, the location prompt's for the pathology: the paper); "shared" uses the location
    prompt's map for both (cxrg before 0.2)."""
    images_per_batch: int = 1
    """Images classified together (classify_batch): their U-Net passes (noise draws, heatmap inversions)
    share calls; the rows do not depend on it beyond float rounding."""

    def __post_init__(self) -> None:
        ldm = self.engine.ldm
        self.draws.check(int(ldm.architecture.scheduler["num_train_timesteps"]))
        # Class prompts always go through the frozen text encoder: a strategy changes only the weights.
        with torch.inference_mode():
            ids, _ = tokenize(ldm.tokenizer, [self.healthy_prompt, self.pathology_prompt])
            self.contexts = encode(ldm.text_encoder, ids).to(ldm.dtype)

    def error_maps(self, key: str, pixels: torch.Tensor) -> np.ndarray:
        """(2, h, w): healthy and pathology prompts' per-position errors, averaged over the image's draws."""
        ldm = self.engine.ldm
        with torch.inference_mode():
            latent = self.engine.encode_image(pixels)
            t, eps = draw_noise(self.seed, key, self.draws, tuple(latent.shape[1:]))
            return error_maps(ldm.unet, latent, self.contexts, t, eps, ldm.alphas,
                              ldm.architecture.scheduler["prediction_type"], self.draws.batch_size,
                              self.draws.error)

    def classify(self, job: Job, image: np.ndarray, maps: np.ndarray | None = None) -> list[dict[str, str]]:
        """Every (run, strategy) row of one image (`maps`: its error maps, when computed already)."""
        pixels = self.engine.model_input(image)
        maps = self.error_maps(job.key, pixels) if maps is None else maps
        heat = self.heatmaps.maps(pixels, [run.prompt for run in job.runs], self.strategies)
        own = (self.heatmaps.maps(pixels, [self.healthy_prompt], self.strategies, vocabulary=False)
               if self.weighting == "per-class" else None)
        rows = []
        for i, run in enumerate(job.runs):
            for strategy in self.strategies:
                model_map = heat[strategy][i]
                weights = None if model_map is None else to_latent(model_map, maps.shape[-2:])
                if own is None:
                    healthy, pathology = weighted_error(maps, weights)
                else:
                    healthy_map = own[strategy][0]
                    healthy_weights = None if healthy_map is None else to_latent(healthy_map, maps.shape[-2:])
                    healthy, pathology = class_weighted_error(maps, [healthy_weights, weights])
                row = _row(job, run.unit, run.label, run.prompt, strategy)
                row.update(error_healthy=repr(float(healthy)), error_pathology=repr(float(pathology)),
                           score=repr(float(healthy - pathology)))
                if weights is not None and not np.any(weights > 0):
                    row["note"] = EMPTY_HEATMAP
                if model_map is not None and run.boxes is not None:
                    full = self.engine.transform.heatmap_to_image(model_map, *image.shape[:2])
                    row["miou"] = repr(metrics.score(metrics.normalise(full), run.boxes)[1])
                rows.append(row)
        return rows


    def error_maps_batch(self, keys: Sequence[str], pixels: Sequence[torch.Tensor]) -> list[np.ndarray]:
        """`error_maps` of several images, their draws sharing the U-Net calls."""
        from cxrg.classify.diffusion import error_maps_batch

        ldm = self.engine.ldm
        with torch.inference_mode():
            latents = self.engine.encode_image(torch.cat(list(pixels)))
            draws = [draw_noise(self.seed, key, self.draws, tuple(latents.shape[1:])) for key in keys]
            return error_maps_batch(ldm.unet, latents, self.contexts, [t for t, _ in draws],
                                    [e for _, e in draws], ldm.alphas,
                                    ldm.architecture.scheduler["prediction_type"], self.draws.batch_size,
                                    self.draws.error)

    def classify_batch(self, jobs: Sequence[Job], images: Sequence[np.ndarray]) -> list[list[dict[str, str]]]:
        """`classify` of several images: the error maps of all in shared U-Net calls, their heatmaps'
        inversions in one batch (the engine keeps the trajectories for the per-image heatmap calls)."""
        pixels = [self.engine.model_input(image) for image in images]
        maps = self.error_maps_batch([job.key for job in jobs], pixels)
        if any(s != "none" for s in self.strategies):
            with torch.inference_mode():
                self.engine.trajectories(pixels)
        return [self.classify(job, image, m) for job, image, m in zip(jobs, images, maps, strict=True)]


def _row(job: Job, unit: str, label: int, prompt: str, strategy: str) -> dict[str, str]:
    return {"unit": unit, "kind": "positive" if label == 1 else "negative", "label": str(label),
            "image": str(job.image_path or ""), "prompt": prompt, "strategy": strategy,
            "error_healthy": "", "error_pathology": "", "score": "", "miou": "", "note": "", "seconds": "",
            "error": ""}


def read_scores(path: Path) -> dict[tuple[str, str, str, str], dict[str, str]]:
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {(r["kind"], r["unit"], r["prompt"], r["strategy"]): r for r in read_csv_dicts(handle)}


def load_image(job: Job) -> np.ndarray:
    from cxrg.images import read_annotated_image

    if job.error or job.image_path is None:
        raise CxrgError(job.error or "no image path")
    return read_annotated_image(job.image_path, job.image_size)


def run_keys(kind: str, run: Run, strategies: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """scores.csv keys of one run: (kind, unit, prompt, strategy)."""
    return [(kind, run.unit, run.prompt, s) for s in strategies]


def keys(job: Job, strategies: Sequence[str]) -> list[tuple[str, str, str, str]]:
    return [k for run in job.runs for k in run_keys(job.kind, run, strategies)]


def run_classification(classifier: Classifier, jobs: Sequence[Job], run: RunDir,
                       progress: Callable[[int], Any] | None = None,
                       ranks: Ranks | None = None) -> dict[tuple[str, str, str, str], dict]:
    """Classify every job not finished in an earlier run; write scores.csv as rows come (atomically).

    `ranks` (several processes, see cxrg.bench.shards): this process classifies its share of the images
    with work left into RUN/shards/scores.rank{r}-of-{N}.csv; rank 0 waits for every shard, merges them
    into scores.csv and returns every row; the other ranks return their own rows. Rank 0 must have folded
    old shards into scores.csv (shards.fold_in) before any process gets here."""
    ranks = ranks or Ranks()
    path = run.file("scores.csv")
    if not ranks.sharded:
        fold_in(run.path, path.name, SCORE_FIELDS, read_scores)
    rows = read_scores(path)
    strategies = classifier.strategies
    wanted = {k for job in jobs for k in keys(job, strategies)}
    rows = {k: r for k, r in rows.items() if k in wanted}  # e.g. after a smaller --limit
    done = [job for job in jobs if all(k in rows and not rows[k]["error"] for k in keys(job, strategies))]
    if done:
        run.logger.info("resuming: %d of %d images already classified", len(done), len(jobs))
    finished = {id(job) for job in done}
    if ranks.sharded:
        left = [job for job in jobs if id(job) not in finished]
        todo = mine(left, ranks)
        out_rows: dict[tuple[str, str, str, str], dict] = {}
        out_path = shard_path(run.path, "scores", ranks.rank, ranks.world)
        run.logger.info("%s: %d of %d images with work left", ranks.label(), len(todo), len(left))

        def write() -> None:
            atomic_write_csv(out_path, SCORE_FIELDS, _ordered(out_rows, todo, strategies))
    else:
        todo, out_rows = list(jobs), rows

        def write() -> None:
            atomic_write_csv(path, SCORE_FIELDS, _ordered(rows, jobs, strategies))
    last_flush = time.monotonic()
    try:
        with heartbeat(run.path, "scores", ranks) if ranks.sharded else contextlib.nullcontext():
            size = max(1, classifier.images_per_batch)
            for start in range(0, len(todo), size):
                chunk = [job for job in todo[start:start + size] if id(job) not in finished]
                for job, new, seconds in _classify_chunk(classifier, chunk):
                    for row in new:
                        row["seconds"] = seconds
                        out_rows[(row["kind"], row["unit"], row["prompt"], row["strategy"])] = row
                    if new and new[0]["error"]:
                        run.logger.warning("%s %s: %s", job.kind, job.key, new[0]["error"])
                if progress is not None:
                    progress(len(todo[start:start + size]))
                if time.monotonic() - last_flush > FLUSH_SECONDS:
                    write()
                    last_flush = time.monotonic()
    finally:
        write()
    if ranks.sharded:
        owed = [k for job in left for k in keys(job, strategies)]
        merged = finish(run.path, "scores", ranks, len(out_rows), read_scores, owed, run.logger)
        if merged is None:
            return out_rows
        rows.update(merged)
        atomic_write_csv(path, SCORE_FIELDS, _ordered(rows, jobs, strategies))
        remove_shards(run.path, "scores")
        run.logger.info("merged the shards of %d processes into %s", ranks.world, path.name)
    return rows


def _classify_one(classifier: Classifier, job: Job, image: np.ndarray | None = None
                  ) -> list[dict[str, str]]:
    try:
        return classifier.classify(job, load_image(job) if image is None else image)
    except CxrgError as exc:
        return _failed(job, classifier.strategies, exc.one_line())
    except Exception as exc:  # one image's failure must not stop the run
        return _failed(job, classifier.strategies, f"{type(exc).__name__}: {exc}")


def _classify_chunk(classifier: Classifier, jobs: Sequence[Job]) -> list[tuple[Job, list[dict], str]]:
    """(job, rows, seconds) of several images: together (classify_batch) when there are several that
    load; if that fails, or for one image, each alone, so a failing image fails alone."""
    loaded: list[tuple[Job, np.ndarray]] = []
    out: dict[int, tuple[Job, list[dict], str]] = {}
    for job in jobs:
        started = time.perf_counter()
        try:
            loaded.append((job, load_image(job)))
        except Exception:
            out[id(job)] = (job, _classify_one(classifier, job), f"{time.perf_counter() - started:.3f}")
    if len(loaded) > 1:
        started = time.perf_counter()
        try:
            rows = classifier.classify_batch([j for j, _ in loaded], [im for _, im in loaded])
        except Exception:
            rows = None
        if rows is not None:
            seconds = f"{(time.perf_counter() - started) / len(loaded):.3f}"
            out.update((id(job), (job, new, seconds)) for (job, _), new in zip(loaded, rows, strict=True))
            loaded = []
    for job, image in loaded:
        started = time.perf_counter()
        out[id(job)] = (job, _classify_one(classifier, job, image), f"{time.perf_counter() - started:.3f}")
    return [out[id(job)] for job in jobs]


def _failed(job: Job, strategies: Sequence[str], error: str) -> list[dict[str, str]]:
    rows = []
    for run in job.runs:
        for strategy in strategies:
            row = _row(job, run.unit, run.label, run.prompt, strategy)
            row["error"] = error
            rows.append(row)
    return rows


def _ordered(rows: dict, jobs: Sequence[Job], strategies: Sequence[str]) -> list[dict]:
    """Rows in cohort order (positives, then negatives), whatever order they were computed in."""
    return [rows[k] for job in jobs for k in keys(job, strategies) if k in rows]


def value(row: dict[str, str] | None, column: str) -> float:
    if row is None or row.get("error") or not row.get(column):
        return math.nan
    return float(row[column])
