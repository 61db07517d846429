"""Subcommands whose capability later issues build; until then they say so and exit with code 2."""

from __future__ import annotations

import typer

from cxrg.errors import NotImplementedYet

PENDING = {
    "curate": "Turn radiology reports into '{location} {pathology}' training and test sets.",
    "lut": "Build or show the anatomical Gaussian look-up table.",
    "tune": "Prompt-tune the anatomy token embeddings of the LDM.",
    "ground": "Ground a phrase on a chest radiograph: write a heatmap, an overlay and a JSON summary.",
    "classify": "Grounded diffusion classification (heatmap-weighted errors) with AUROC and bins.",
}


def _pending(name: str):
    def command(ctx: typer.Context) -> None:
        raise NotImplementedYet(f"`cxrg {name}` is not implemented yet",
                                hint="see the README for what works today")
    command.__doc__ = PENDING[name] + " (not implemented yet)"
    return command


def register(app: typer.Typer, skip: tuple[str, ...] = ()) -> None:
    for name in PENDING:
        if name not in skip:
            app.command(name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
                _pending(name))
