"""`cxrg bench`: score grounding models on a dataset with CNR, mIoU and bootstrap confidence intervals."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

RESUME_KEYS = ("dataset", "annotations", "split", "lut", "dtype", "embeddings")


def bench(
    models: Annotated[str, typer.Option(help="Comma-separated model ids, e.g. oracle,prior.")],
    dataset: Annotated[str, typer.Option(help="ms-cxr, vindr-cxr or generic (see the README).")],
    annotations: Annotated[Path, typer.Option(help="The dataset's annotations CSV.")],
    images: Annotated[Path, typer.Option(help="Root folder the CSV's image paths are relative to.")],
    out: Annotated[Path | None, typer.Option(help="Run folder; rerunning with the same folder resumes. "
                                             "Default: runs/bench-<dataset>.")] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Score only the first N samples.")] = None,
    split: Annotated[str | None, typer.Option(help="MS-CXR v1.1 split to keep (train/val/test).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default $CXRG_HOME).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    strict: Annotated[bool, typer.Option(help="Stop if any model fails to load.")] = False,
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON for the prior and the VinDr prompts "
                                             "(same as $CXRG_LUT; default: the shipped one).")] = None,
    dtype: Annotated[str, typer.Option(help="LDM precision: float32, bfloat16 or float16.")] = "float32",
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings for the ldm model.")] = None,
) -> None:
    """Score models on a phrase-grounding dataset: per_sample.csv, summary.csv/json, results.md/png."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cxrg.bench.datasets import read_dataset
    from cxrg.bench.harness import run_benchmark
    from cxrg.bench.reports import rich_table, write_reports
    from cxrg.cli import say
    from cxrg.errors import CxrgError, UsageError
    from cxrg.registry import discover, load_model
    from cxrg.runs import RunDir

    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise UsageError("--models is empty", hint="e.g. --models oracle")
    if len(set(names)) != len(names):
        raise UsageError(f"--models names a model twice: {models}")
    if not images.is_dir():
        raise UsageError(f"images folder not found: {images}", hint="check --images")
    weights = weights or (Path(os.environ["CXRG_HOME"]) if os.environ.get("CXRG_HOME") else None)
    if lut is not None:
        from cxrg.anatomy.lut import Lut

        Lut.load(lut)  # a bad file fails here, before any work
        os.environ["CXRG_LUT"] = str(lut.resolve())
    from cxrg.cli.ground import set_model_options

    set_model_options(dtype, embeddings)
    data = read_dataset(dataset, annotations, images, split=split)
    if not data.samples:
        raise UsageError("the dataset has no samples", where=str(annotations))

    err = Console(stderr=True)
    entries = discover()
    loaded, model_errors = {}, {}
    for name in names:
        try:
            loaded[name] = load_model(name, weights_dir=weights, device=device, entries=entries)
        except CxrgError as exc:
            if strict:
                raise
            model_errors[name] = exc.one_line()
            say(f"cxrg: warning: model {name} not run: {exc.one_line()}")
    if not loaded:
        raise UsageError("no model could be loaded", hint="see `cxrg models check`")

    out = out or Path("runs") / f"bench-{dataset}"
    config = {"models": names, "dataset": dataset, "annotations": str(annotations.resolve()),
              "images": str(images.resolve()), "split": split, "limit": limit, "resamples": resamples,
              "seed": seed, "device": device, "lut": os.environ.get("CXRG_LUT", "default"),
              "dtype": dtype, "embeddings": os.environ.get("CXRG_EMBEDDINGS")}
    run = RunDir(out, "bench", config, resume_keys=RESUME_KEYS)
    for note in data.notes:
        run.logger.info("dataset: %s", note)
        say(f"dataset: {note}")
    total = len(data.samples[:limit] if limit else data.samples)
    with Progress(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("samples", total=total)
        result = run_benchmark(loaded, data, run, resamples, seed, limit, model_errors,
                               progress=lambda k: bar.advance(task, k))
    write_reports(result.summary, run.path)
    Console(file=sys.stdout).print(rich_table(result.summary))
    for name, count in result.summary["counts"].items():
        line = f"{name}: {count['scored']} of {count['samples']} samples scored, {count['failed']} failed"
        if count["failed"]:
            line += " (reasons in per_sample.csv and log.txt)"
        if count.get("cnr_undefined"):
            line += f", CNR undefined for {count['cnr_undefined']}"
        say(line)
    say(f"results in {run.path}")
    run.close()
