"""`cxrg bench`: score grounding models on a dataset with CNR, mIoU and bootstrap confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import OPTION_HELP


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
    prompt_text: Annotated[str, typer.Option(help="ms-cxr-loc: score the standardised prompt or the "
                                             "original MS-CXR phrase (paper, Appendix H.1).")]
    = "standardised",
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help=OPTION_HELP)] = None,
    report: Annotated[bool | None, typer.Option("--report/--no-report", help="Write RUN/report.html "
                                                "(default: yes up to 2,000 model-sample pairs).")] = None,
    exact_prompt: Annotated[bool, typer.Option(help="Give each sample's prompt to the models as written "
                                               "(default: read into the canonical prompt).")] = False,
    restart: Annotated[bool, typer.Option(help="Drop the results already in --out and start over.")] = False,
    batch_size: Annotated[str | None, typer.Option(help="Images per model call: N or auto (default: [bench] "
                                                   "batch_size in cxrg.toml, else auto: 1 on CPU, what fits "
                                                   "the free memory on CUDA). Results do not depend on it.")]
    = None,
) -> None:
    """Score models on a phrase-grounding dataset: per_sample.csv, summary.csv/json, results.md/png."""
    import cxrg.bench
    from cxrg.config import load_config

    cfg = load_config(cli={"weights": weights, "device": device})
    cxrg.bench.run(cfg, models, dataset, annotations, images, out, resamples, seed, limit, split, strict,
                   extractor, option, {"lut": lut, "dtype": dtype, "embeddings": embeddings}, save_heatmaps,
                   heatmap_size, prompt_text, report=report, exact_prompt=exact_prompt, restart=restart,
                   batch_size=batch_size)
