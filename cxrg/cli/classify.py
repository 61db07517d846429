"""`cxrg classify`: grounded diffusion classification (paper Appendix K): AUROC per heatmap strategy and in
low/high mIoU bins. Heavy imports (torch, the LDM) happen inside the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import QUIET
from cxrg.progress import quiet as set_quiet
from cxrg.protocol import PROTOCOL_HELP

STRATEGY_HELP = ("Comma-separated heatmap strategies: none (plain classifier), fixed (frozen LDM, "
                 "--fixed-prompt), location (frozen LDM, '{location} {pathology}'), tuned (tuned embeddings, "
                 "same prompt). "
                 "Default: all four, tuned skipped with a note when no tuned embeddings are found.")


def classify(
    positives: Annotated[Path, typer.Option(help="Positives: MS-CXR(-loc) or generic grounding CSV with "
                                            "boxes and '{location} {pathology}' prompts.")],
    images: Annotated[Path, typer.Option(help="Folder the positives' image paths are relative to.")],
    out: Annotated[Path, typer.Option(help="Run folder; rerunning with the same folder resumes.")
                   ] = Path("runs/classify"),
    positives_format: Annotated[str, typer.Option(help="ms-cxr or generic.")] = "ms-cxr",
    negatives: Annotated[Path | None, typer.Option(help="Healthy images: CSV with columns image[, image_id].")
                         ] = None,
    chexpert_labels: Annotated[Path | None, typer.Option(help="Or: mimic-cxr-2.0.0-chexpert.csv; negatives = "
                                                         "studies with No Finding = 1.")] = None,
    metadata: Annotated[Path | None, typer.Option(help="mimic-cxr-2.0.0-metadata.csv (with "
                                                  "--chexpert-labels).")] = None,
    negatives_images: Annotated[Path | None, typer.Option(help="Folder the negatives' paths are relative to "
                                                          "(default: --images).")] = None,
    views: Annotated[str | None, typer.Option(help="MIMIC-CXR views kept as negatives, e.g. PA,AP (default: "
                                              "the positives' view distribution, from --metadata).")] = None,
    max_negatives: Annotated[int | None, typer.Option(min=1, help="A seeded random subset of N negatives "
                                                      "(default: as many as there are positive images).")
                             ] = None,
    all_negatives: Annotated[bool, typer.Option(help="Use every negative instead of a balanced subset.")
                             ] = False,
    split_file: Annotated[Path | None, typer.Option(help="mimic-cxr-2.0.0-split.csv: --chexpert-labels "
                                                    "negatives come from its --split (default: cxrg.toml "
                                                    "[mimic-cxr] split).")] = None,
    split: Annotated[str, typer.Option(help="The MIMIC-CXR split the negatives come from (paper: test); "
                                       "'any' ignores the split file (the paper protocol refuses to run "
                                       "without a split file otherwise).")] = "test",
    weighting: Annotated[str, typer.Option(help="Eq. 8: per-class (each class's error weighted by its own "
                                           "prompt's heatmap, the paper) or shared (the location prompt's "
                                           "map for both classes).")] = "per-class",
    pathology: Annotated[str, typer.Option(help="The positive class.")] = "Pneumothorax",
    healthy_prompt: Annotated[str, typer.Option(help="The healthy class prompt.")
                              ] = "No acute cardiopulmonary process",
    pathology_prompt: Annotated[str | None, typer.Option(help="The pathology class prompt (default: the "
                                                         "pathology's name, e.g. 'pneumothorax').")] = None,
    fixed_prompt: Annotated[str | None, typer.Option(help="Heatmap prompt of the fixed strategy (default: "
                                                     "the pathology class prompt).")] = None,
    negative_locations: Annotated[str, typer.Option(help="Locations of the negatives' runs, one run each.")
                                  ] = "left apical,right apical,left,right",
    strategies: Annotated[str | None, typer.Option(help=STRATEGY_HELP)] = None,
    draws: Annotated[int, typer.Option(min=1, help="(t, eps) draws per image, shared by the class prompts.")
                     ] = 100,
    t_min: Annotated[int, typer.Option(min=0, help="Smallest timestep drawn.")] = 0,
    t_max: Annotated[int, typer.Option(min=0, help="Largest timestep drawn (inclusive).")] = 999,
    batch_size: Annotated[int, typer.Option(min=1, help="U-Net passes per call.")] = 32,
    images_per_batch: Annotated[int, typer.Option(min=1, help="Images classified together: their noise "
                                                  "draws share U-Net calls, their heatmaps' inversions run "
                                                  "as one batch (results do not depend on it).")] = 1,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the draws, the negatives subset and the bootstrap.")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N positive and N negative images.")
                     ] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings for the tuned strategy (default "
                                                    "$CXRG_EMBEDDINGS or <weights>/tuned_embeddings."
                                                    "safetensors).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda, ...")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 (default), bfloat16 or float16.")] = None,
    protocol: Annotated[str | None, typer.Option(help=PROTOCOL_HELP)] = None,
    error: Annotated[str | None, typer.Option(help="Eq. 8's error per position: norm (paper: ||eps - "
                                              "eps_theta|| over channels) or squared (cxrg, Li et al.).")
                     ] = None,
    loc_pairs: Annotated[str | None, typer.Option(help="MS-CXR-loc positives: phrase (paper: one run per "
                                                  "phrase) or merged (cxrg).")] = None,
    dicom_display: Annotated[str | None, typer.Option(help="DICOM inputs: mimic-jpg (paper) or window "
                                                      "(cxrg).")] = None,
    quiet: QUIET = False,
) -> None:
    """Heatmap-weighted diffusion classifier: scores.csv, summary.json, auroc/bins.csv, results.md/png."""
    given = dict(locals())  # the parameters, exactly as cxrg.classify.run takes them (and --quiet)
    set_quiet(given.pop("quiet"))
    import cxrg.classify

    cxrg.classify.run(**given)


def register(app: typer.Typer) -> None:
    """Add the classify command to the main app."""
    app.command("classify")(classify)
