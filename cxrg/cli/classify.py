"""`cxrg classify`: grounded diffusion classification (being built)."""

from __future__ import annotations

import typer

from cxrg.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    """Add the classify command to the main app."""

    @app.command("classify", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def classify(ctx: typer.Context) -> None:
        """Grounded diffusion classification with AUROC and mIoU bins (not implemented yet)."""
        raise NotImplementedYet("`cxrg classify` is not implemented yet",
                                hint="see the README for what works today")
