"""`cxrg weights status | fetch | tiny`: where the LDM's weights are looked for, and how to get them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Find, fetch or fake the LDM's weights.", no_args_is_help=True)
WeightsOption = Annotated[Path | None, typer.Option("--weights", help="Weights folder (default $CXRG_HOME, "
                                                    "else ~/.cache/cxrg).")]


@app.command("status")
def status(weights: WeightsOption = None) -> None:
    """List every file the LDM needs: found or missing, where, and how to get it. Exit 1 if any is missing."""
    from cxrg.config import weights_root
    from cxrg.ldm.weights import WeightPaths

    paths = WeightPaths(weights_root(weights))
    typer.echo(f"weights folder: {paths.root}")
    note = test_weights_note(paths)
    if note:
        typer.echo(f"  NOTE: not the real weights: {note}; its heatmaps show the pipeline, not the paper's "
                   "model")
    missing = 0
    for what, path, present, how in paths.status():
        state = ("ok (test)" if note else "ok") if present else "MISSING"
        typer.echo(f"  {state:<9} {what}: {path}")
        if not present:
            missing += 1
            typer.echo(f"          get it: {how}")
    tuned = paths.tuned_embeddings
    typer.echo(f"  {'ok' if tuned.is_file() else 'absent':<9} tuned embeddings (model ldm): {tuned}"
               + ("" if tuned.is_file() else " (make them with `cxrg tune`)"))
    if missing:
        raise typer.Exit(1)


def test_weights_note(paths) -> str | None:
    """The note a random (`cxrg weights tiny`) or organism model carries in its architecture file."""
    import json

    marker = paths.bundle / "configs" / "cxrg_architecture.json"
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text()).get("note") or "written by cxrg, not the released bundle")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return "written by cxrg, not the released bundle"


@app.command("fetch")
def fetch(weights: WeightsOption = None,
          bundle_repo: Annotated[str, typer.Option(help="Hugging Face repository of the MONAI bundle.")] =
          "MONAI/cxr_image_synthesis_latent_diffusion_model",
          text_repo: Annotated[str, typer.Option(help="Repository of the SD 2.1 text encoder.")] =
          "stabilityai/stable-diffusion-2-1-base") -> None:
    """Download the bundle and the SD 2.1 text encoder with huggingface_hub (needs the network)."""
    from cxrg.config import weights_root
    from cxrg.ldm.fetch import fetch_weights

    paths = fetch_weights(weights_root(weights), bundle_repo, text_repo)
    paths.require()
    typer.echo(f"weights ready in {paths.root}")


@app.command("tiny")
def tiny(folder: Annotated[Path, typer.Argument(help="Where to write the tiny model.")],
         seed: Annotated[int, typer.Option(help="Random seed of the weights.")] = 0) -> None:
    """Write a tiny random LDM in the real layout: every command runs on it with --weights FOLDER."""
    from cxrg.ldm.tiny import write_tiny

    write_tiny(folder, seed)
    typer.echo(f"tiny random LDM (seed {seed}) written to {folder}; its heatmaps mean nothing, "
               f"use it to try commands: --weights {folder}")
