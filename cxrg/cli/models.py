"""`cxrg models list | info | check`: what is installed, what each model needs, whether it loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="List, describe and check the installed grounding models.", no_args_is_help=True)


@app.command("list")
def list_models() -> None:
    """Installed models: name, distribution, version; a plugin that fails to import shows its error."""
    from cxrg.registry import PluginLoadError, discover
    from cxrg.runs import interrupt_guard

    with interrupt_guard():
        for name, entry in discover().items():
            try:
                factory = entry.load_factory()
                card = getattr(factory, "card", None)
                gt = " (uses ground truth)" if getattr(card, "uses_ground_truth", False) else ""
                typer.echo(f"{name}: {entry.distribution} {entry.version}{gt}")
            except PluginLoadError as exc:
                typer.echo(f"{name}: error: {exc.one_line()}")


@app.command("info")
def info(name: str, as_json: Annotated[bool, typer.Option("--json", help="Print the card as JSON.")] = False
         ) -> None:
    """Print a model's card (version, licence, what it uses, weights and how to get them) and its options."""
    from cxrg.registry import create_model, describe_options
    from cxrg.runs import interrupt_guard

    with interrupt_guard():
        model = create_model(name)
    card, options = model.card, describe_options(model)
    if as_json:
        typer.echo(json.dumps(card.as_dict() | {"options": [
            {"name": o.name, "kind": o.kind, "default": o.default, "help": o.help, "choices": list(o.choices)}
            for o in options]}, indent=2, default=str))
        return
    typer.echo(f"{card.name} {card.version} ({card.licence})")
    typer.echo(card.description)
    typer.echo(f"uses ground truth: {'yes' if card.uses_ground_truth else 'no'}")
    typer.echo(f"metrics: {', '.join(card.metrics)}")
    if card.weights:
        typer.echo("weights:")
        for weight in card.weights:
            typer.echo(f"  {weight.path}: {weight.description} (get it: {weight.how_to_get})")
    else:
        typer.echo("weights: none needed")
    typer.echo(f"prompts: {card.prompts}")
    if card.notes:
        typer.echo(f"notes: {card.notes}")
    if options:
        typer.echo("options (-o KEY=VALUE, or [models.NAME] in cxrg.toml):")
        for o in options:
            choices = f" ({' | '.join(o.choices)})" if o.choices else ""
            default = "unset" if o.default is None else repr(o.default)
            typer.echo(f"  {o.name} [{o.kind}{choices}, default {default}]: {o.help}")


@app.command("check")
def check(
    names: Annotated[list[str] | None, typer.Argument(help="Models to check (default: all).")] = None,
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default $CXRG_HOME).")] = None,
) -> None:
    """Import and load each model; print `name: ok` or `name: error: ...`. Exit 1 if any failed."""
    from cxrg.errors import CxrgError
    from cxrg.registry import discover, load_model
    from cxrg.runs import interrupt_guard

    entries = discover()
    failed = 0
    with interrupt_guard():
        for name in names or list(entries):
            try:
                load_model(name, weights_dir=weights, entries=entries)
                typer.echo(f"{name}: ok")
            except CxrgError as exc:
                failed += 1
                typer.echo(f"{name}: error: {exc.one_line()}")
    if failed:
        raise typer.Exit(1)
