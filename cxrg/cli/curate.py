"""`cxrg curate`: reports -> '{location} {pathology}' training and test sets (being built)."""

from __future__ import annotations

import typer

from cxrg.errors import NotImplementedYet


def register(app: typer.Typer) -> None:
    """Add the curate command(s) to the main app."""

    @app.command("curate", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def curate(ctx: typer.Context) -> None:
        """Turn radiology reports into '{location} {pathology}' sets (not implemented yet)."""
        raise NotImplementedYet("`cxrg curate` is not implemented yet",
                                hint="see the README for what works today")
