"""`cxrg datasets`: the datasets and paths named in cxrg.toml, and whether their files are there."""

from __future__ import annotations

import typer

EXAMPLE = '''weights = "/data/cxrg-weights"

[ms-cxr]
annotations = "/data/ms-cxr/MS_CXR_Local_Alignment_v1.1.0.csv"
images = "/data/mimic-cxr-jpg/2.0.0"

[vindr-cxr]
annotations = "/data/vindr-cxr/1.0.0/annotations/annotations_test.csv"
images = "/data/vindr-cxr/1.0.0/test"'''


def datasets() -> None:
    """List the configured datasets (./cxrg.toml, else $CXRG_HOME/config.toml) and check their files."""
    from cxrg.config import DATASETS, env, home, load_config

    cfg = load_config()
    if cfg.path is None:
        where = f"{home() / 'config.toml'}" + ("" if env("CXRG_HOME") else " ($CXRG_HOME is not set)")
        typer.echo(f"no configuration: looked for ./cxrg.toml and {where}. A start:\n")
        typer.echo(EXAMPLE)
        return
    typer.echo(f"configuration: {cfg.path}")
    for name, keys in DATASETS.items():
        if all(cfg.get(f"{name}.{key}") is None for key in keys):
            typer.echo(f"  {name}: not configured")
            continue
        typer.echo(f"  {name}:")
        for key in keys:
            value = cfg.get(f"{name}.{key}")
            state = "not set" if value is None else ("ok" if value.exists() else "MISSING")
            typer.echo(f"    {key:<12} {state:<8} {value if value is not None else ''}")
    for key in ("weights", "embeddings", "lut", "tune.manifest"):
        value = cfg.get(key)
        if value is not None:
            typer.echo(f"  {key:<14} {'ok' if value.exists() else 'MISSING':<8} {value}")
