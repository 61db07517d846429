"""`cxrg tune`: prompt-tune the anatomy token embeddings of the LDM on a curated manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import QUIET
from cxrg.progress import quiet as set_quiet
from cxrg.protocol import PROTOCOL_HELP


def tune(
    manifest: Annotated[Path | None, typer.Option(help="manifest.csv or .jsonl from `cxrg curate` (default: "
                                                  "cxrg.toml [tune] manifest).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder the manifest's image_path values are relative "
                                                "to (default: cxrg.toml [tune] or [mimic-cxr] images).")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: cxrg.toml [tune] out, else "
                                             "runs/tune). A folder holding a checkpoint is continued.")]
    = None,
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON (default: the one in force).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Tuning steps (one sample each).")] = None,
    epochs: Annotated[float | None, typer.Option(min=0.01, help="Or: passes over the manifest.")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
    alpha: Annotated[float, typer.Option(help="Weight of the Gaussian in the target (eq. 3).")] = 0.1,
    epsilon: Annotated[float, typer.Option(help="Support threshold of the Gaussian (eq. 3).")] = 1e-5,
    jitter: Annotated[float, typer.Option(help="mu/sigma jitter, fraction of the image size.")] = 0.05,
    div_weight: Annotated[float, typer.Option(min=0.0, help="Weight of L_div (paper: 1; 0 turns it off, "
                                              "Appendix H.2).")] = 1.0,
    target_norm: Annotated[str | None, typer.Option(help="Scale of G in eq. 3: peak (peak 1, as the LUT "
                                                    "renders it; cxrg) or density (sums to 1; the paper "
                                                    "protocol); docs/tuning.md.")] = None,
    div_pairs: Annotated[str, typer.Option(help="Pairs of eq. 2: all (the paper) or across-phrases (a "
                                           "labelled departure: no pair within one location).")] = "all",
    probe: Annotated[int, typer.Option(min=0, help="Samples held out of the manifest (seeded, at most a "
                                       "fifth) whose unjittered L_loc/L_div are recorded; 0: none.")] = 8,
    probe_every: Annotated[int, typer.Option(min=1, help="Steps between probe records.")] = 50,
    probe_patience: Annotated[int, typer.Option(min=1, help="Warn when probe L_loc has not fallen after "
                                                "this many steps.")] = 100,
    log_with: Annotated[str, typer.Option(help="Also log to an experiment tracker through accelerate: "
                                          "none or tensorboard (OUT/tracking).")] = "none",
    shared_tokens: Annotated[str, typer.Option(help="Sub-tokens shared by a location and a pathology "
                                               "(cardi, ome, gal, y; ple, ural): trainable (default) or "
                                               "frozen.")] = "trainable",
    seed: Annotated[int, typer.Option(help="Seed of the sample order and the jitter.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps.")] = 50,
    chunk: Annotated[int, typer.Option(min=1, help="Captured timesteps per U-Net call.")] = 10,
    cache: Annotated[Path | None, typer.Option(help="Trajectory cache folder (default OUT/trajectories).")]
    = None,
    cache_dtype: Annotated[str, typer.Option(help="float32 or float16 for the cached latents.")] = "float32",
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda, ...")] = None,
    autocast: Annotated[str, typer.Option(help="Mixed precision of the U-Net passes: none, bfloat16, "
                                          "float16 (GPU).")] = "none",
    checkpointing: Annotated[bool, typer.Option(help="Gradient checkpointing of the U-Net's encoder blocks "
                                                "(less memory, more compute; for large GPUs runs).")] = False,
    restart: Annotated[bool, typer.Option(help="Start over even if OUT holds a checkpoint (it is replaced).")]
    = False,
    install: Annotated[bool, typer.Option(help="Install the result as the default tuned embeddings "
                                          "(<weights>/tuned_embeddings.safetensors).")] = True,
    protocol: Annotated[str | None, typer.Option(help=PROTOCOL_HELP)] = None,
    quiet: QUIET = False,
) -> None:
    """Tune the anatomy rows of the codebook (L_div + L_loc, paper eq. 2-4); writes OUT/tuned_embeddings."""
    given = dict(locals())  # the parameters, exactly as cxrg.tuning.run takes them (and --quiet)
    set_quiet(given.pop("quiet"))
    import cxrg.tuning

    cxrg.tuning.run(**given)
