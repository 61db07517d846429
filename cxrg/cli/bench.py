"""`cxrg bench`: score grounding models on a dataset with CNR, mIoU and bootstrap confidence intervals."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

RESUME_KEYS = ("dataset", "annotations", "split", "lut", "dtype", "embeddings")
CONFIG_SECTION = {"ms-cxr": "ms-cxr", "ms-cxr-loc": "ms-cxr", "vindr-cxr": "vindr-cxr"}


def bench(
    models: Annotated[str, typer.Option(help="Comma-separated model ids, e.g. oracle,prior.")],
    dataset: Annotated[str, typer.Option(help="ms-cxr, ms-cxr-loc, vindr-cxr or generic (see the README).")],
    annotations: Annotated[Path | None, typer.Option(help="The dataset's annotations CSV (default: from "
                                                     "cxrg.toml).")] = None,
    images: Annotated[Path | None, typer.Option(help="Root folder the CSV's image paths are relative to "
                                                "(default: from cxrg.toml).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; rerunning with the same folder resumes. "
                                             "Default: runs/bench-<dataset>.")] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N samples.")] = None,
    split: Annotated[str | None, typer.Option(help="MS-CXR v1.1 split to keep (train/val/test).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, ... (default cpu)")] = None,
    strict: Annotated[bool, typer.Option(help="Stop if any model fails to load.")] = False,
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON for the prior and the VinDr prompts "
                                             "(same as $CXRG_LUT; default: the shipped one).")] = None,
    dtype: Annotated[str | None, typer.Option(help="LDM precision: float32 (default), bfloat16, float16.")]
    = None,
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings for the ldm model.")] = None,
    extractor: Annotated[str, typer.Option(help="ms-cxr-loc: how phrases become prompts: auto (RadGraph-XL "
                                           "when its weights are present, else rules), rules, radgraph, "
                                           "hybrid.")] = "auto",
    save_heatmaps: Annotated[bool, typer.Option(help="Keep every scored heatmap (float16, reduced to "
                                                "--heatmap-size) in RUN/heatmaps/ for `cxrg report` and "
                                                "`cxrg study`.")] = True,
    heatmap_size: Annotated[int, typer.Option(min=16, help="Longer side of the saved heatmaps, pixels.")]
    = 256,
) -> None:
    """Score models on a phrase-grounding dataset: per_sample.csv, summary.csv/json, results.md/png."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cxrg.bench.datasets import read_dataset
    from cxrg.bench.harness import run_benchmark
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.bench.reports import rich_table, write_reports
    from cxrg.cli import say
    from cxrg.cli.ground import apply_model_settings
    from cxrg.config import load_config
    from cxrg.errors import CxrgError, InputError, UsageError
    from cxrg.registry import discover, load_model
    from cxrg.runs import RunDir

    cfg = load_config()
    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise UsageError("--models is empty", hint="e.g. --models oracle")
    if len(set(names)) != len(names):
        raise UsageError(f"--models names a model twice: {models}")
    section = CONFIG_SECTION.get(dataset)
    if annotations is None:
        annotations = cfg.require(f"{section}.annotations", "--annotations") if section else None
    if images is None:
        images = cfg.require(f"{section}.images", "--images") if section else None
    if annotations is None or images is None:
        raise UsageError(f"--dataset {dataset} needs --annotations and --images")
    annotations, images = Path(annotations), Path(images)
    if not images.is_dir():
        raise UsageError(f"images folder not found: {images}", hint="check --images or cxrg.toml")
    settings = apply_model_settings(cfg, weights, device, dtype, embeddings, lut)

    out = out or Path("runs") / f"bench-{dataset}"
    config = {"models": names, "dataset": dataset, "annotations": str(annotations.resolve()),
              "images": str(images.resolve()), "split": split, "limit": limit, "resamples": resamples,
              "seed": seed, "device": settings.device, "lut": os.environ.get("CXRG_LUT", "default"),
              "dtype": settings.dtype, "embeddings": os.environ.get("CXRG_EMBEDDINGS"),
              "config_file": str(cfg.path) if cfg.path else None,
              "save_heatmaps": save_heatmaps, "heatmap_size": heatmap_size}
    if dataset == "ms-cxr-loc":
        if not annotations.is_file():
            raise InputError("MS-CXR annotations file not found", where=str(annotations),
                             hint="check --annotations or [ms-cxr] annotations in cxrg.toml")
        run = RunDir(out, "bench", config, resume_keys=RESUME_KEYS)
        annotations = ms_cxr_loc(annotations, run, extractor, settings.device)
        data = read_dataset("ms-cxr", annotations, images, split=split)
        data.name = "ms-cxr-loc"
    else:
        data = read_dataset(dataset, annotations, images, split=split)
    if not data.samples:
        raise UsageError("the dataset has no samples", where=str(annotations))
    if dataset != "ms-cxr-loc":
        run = RunDir(out, "bench", config, resume_keys=RESUME_KEYS)

    entries = discover()
    loaded, model_errors = {}, {}
    for name in names:
        try:
            loaded[name] = load_model(name, weights_dir=settings.weights, device=settings.device,
                                      entries=entries)
        except CxrgError as exc:
            if strict:
                raise
            model_errors[name] = exc.one_line()
            say(f"cxrg: warning: model {name} not run: {exc.one_line()}")
    if not loaded:
        raise UsageError("no model could be loaded", hint="see `cxrg models check`")

    for note in data.notes:
        run.logger.info("dataset: %s", note)
        say(f"dataset: {note}")
    err = Console(stderr=True)
    total = len(data.samples[:limit] if limit else data.samples)
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("samples", total=total)
        store = HeatmapStore(run.path, heatmap_size) if save_heatmaps else None
        result = run_benchmark(loaded, data, run, resamples, seed, limit, model_errors,
                               progress=lambda k: bar.advance(task, k), store=store)
    write_reports(result.summary, run.path)
    Console(file=sys.stdout).print(rich_table(result.summary))
    for name, count in result.summary["counts"].items():
        line = f"{name}: {count['scored']} of {count['samples']} samples scored, {count['failed']} failed"
        if count.get("no_prediction"):
            line += f" ({count['no_prediction']} no prediction)"
        if count["failed"]:
            line += " (reasons in per_sample.csv and log.txt)"
        if count.get("cnr_undefined"):
            line += f", CNR undefined for {count['cnr_undefined']}"
        say(line)
    say(f"results in {run.path}")
    run.close()


def ms_cxr_loc(ms_cxr: Path, run, extractor: str, device: str) -> Path:
    """MS-CXR rewritten to '{location} {pathology}' prompts, cached in RUN/ms-cxr-loc/ (with dropped.csv)."""
    from cxrg.cli import say
    from cxrg.curation.extractors import make_extractor
    from cxrg.curation.mscxr import to_ms_cxr_loc, write_ms_cxr_loc

    folder = run.file("ms-cxr-loc")
    cached = sorted(folder.glob("*_loc.csv")) if folder.is_dir() else []
    if cached:
        say(f"dataset: MS-CXR-loc from {cached[0]} (delete {folder} to rebuild)")
        return cached[0]
    chosen, note = make_extractor(extractor, device=device)
    result = to_ms_cxr_loc(ms_cxr, chosen)
    path = write_ms_cxr_loc(result, folder, ms_cxr)
    dropped = sum(result.dropped.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in result.dropped.most_common())
    say(f"dataset: MS-CXR-loc ({type(chosen).__name__}{'; ' + note if note else ''}): {len(result.kept)} of "
        f"{len(result.phrases)} phrases kept, {dropped} dropped" + (f" ({reasons})" if reasons else "")
        + f"; written to {path}")
    run.logger.info("ms-cxr-loc: %d kept, %d dropped: %s", len(result.kept), dropped, reasons)
    return path
