"""`cxrg bench`: score grounding models on a dataset with CNR, mIoU and bootstrap confidence intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import OPTION_HELP, QUIET
from cxrg.protocol import EXTRACTOR_HELP, PROTOCOL_HELP


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
    protocol: Annotated[str | None, typer.Option(help=PROTOCOL_HELP)] = None,
    extractor: Annotated[str | None, typer.Option(help="ms-cxr-loc: " + EXTRACTOR_HELP)] = None,
    location_mappings: Annotated[str | None, typer.Option(
        help="ms-cxr-loc: list (paper: phrases naming only an area outside the 27 locations, e.g. "
             "'retrocardiac', are dropped) or extended (cxrg: retrocardiac = left lower).")] = None,
    loc_pairs: Annotated[str | None, typer.Option(
        help="ms-cxr-loc: phrase (paper: one sample per MS-CXR phrase, 1,043 pairs) or merged (cxrg: phrases "
             "of one image that became one prompt are one sample with all their boxes).")] = None,
    vindr_candidates: Annotated[str | None, typer.Option(
        help="vindr-cxr, eq. 7: lut (paper: every Gaussian of the LUT, the heart included) or lung (cxrg: "
             "the one-sided lung locations).")] = None,
    dicom_display: Annotated[str | None, typer.Option(
        help="DICOM inputs: mimic-jpg (paper: MIMIC-CXR-JPG's conversion, min-max to 8 bits + histogram "
             "equalisation, the models' training data) or window (cxrg: the file's display window).")] = None,
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
    quiet: QUIET = False,
    batch_size: Annotated[str | None, typer.Option(help="Images per model call: N or auto (default: [bench] "
                                                   "batch_size in cxrg.toml, else auto: 1 on CPU, what fits "
                                                   "the free memory on CUDA). Results do not depend on it.")]
    = None,
) -> None:
    """Score models on a phrase-grounding dataset: per_sample.csv, summary.csv/json, results.md/png."""
    from cxrg.api import bench as run_bench

    run_bench(models, dataset, annotations, images, out, weights=weights, device=device, resamples=resamples,
              seed=seed, limit=limit, split=split, strict=strict, lut=lut, dtype=dtype, embeddings=embeddings,
              extractor=extractor, options=option, save_heatmaps=save_heatmaps, heatmap_size=heatmap_size,
              prompt_text=prompt_text, report=report, exact_prompt=exact_prompt, restart=restart,
              progress=not quiet, protocol=protocol,
              choices={"location_mappings": location_mappings, "loc_pairs": loc_pairs,
                       "vindr_candidates": vindr_candidates, "dicom_display": dicom_display},
              batch_size=batch_size)
