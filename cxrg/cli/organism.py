"""`cxrg weights organism DIR`: the model organism (a small LDM trained here on chest phantoms)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import QUIET

TUNED_NOTE = ("the tuned embeddings were made with DDIM timestep_spacing trailing: give `ldm` the same, "
              "e.g. -o ldm.timestep_spacing=trailing")


def organism(
    folder: Annotated[Path, typer.Argument(help="Where to write the organism's weights (real layout).")],
    train: Annotated[bool, typer.Option(help="Train it from the seed (about 20 min on one CPU thread) "
                                        "instead of copying the committed weights.")] = False,
    seed: Annotated[int, typer.Option(help="Training seed (0 gives the committed weights).")] = 0,
    sets: Annotated[Path | None, typer.Option(help="Also write the held-out phantom sets (test, val, "
                                              "tune, classify) to this folder.")] = None,
    quiet: QUIET = False,
) -> None:
    """Write the model organism: a small LDM of the real classes trained on synthetic chest phantoms."""
    from cxrg.cli import say
    from cxrg.progress import quiet as set_quiet

    set_quiet(quiet)

    if train:
        from cxrg.organism.weights import regenerate

        summary, same = regenerate(folder, seed, log=say)
        digest = summary["sha256"]["combined"]
        say(f"trained in {summary['seconds']:.0f} s; sha256 {digest}: "
            + ("identical to the committed weights" if same else
               "differs from the committed weights (another seed, CPU or torch build)"))
        if same:  # the committed tuned embeddings belong to exactly these weights
            import shutil

            from cxrg.organism.weights import FOLDER

            tuned = FOLDER / "tuned_embeddings.safetensors"
            if tuned.is_file():
                shutil.copy2(tuned, Path(folder) / tuned.name)
                say(f"the organism's tuned embeddings copied beside them ({TUNED_NOTE})")
    else:
        from cxrg.organism.weights import copy_weights

        copy_weights(folder)
        say(f"organism weights and its tuned embeddings copied to {folder} ({TUNED_NOTE})")
    if sets is not None:
        from cxrg.organism.heldout import write_sets

        written = write_sets(sets)
        say("held-out phantom sets: " + ", ".join(f"{k} {v}" for k, v in written.items()))
    typer.echo(f"use it with --weights {folder}; its maps are phantoms' maps, not a radiograph model's")
