"""`cxrg ldm diagnose`: CNR and mIoU per captured layer and per timestep window on a bench dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect the LDM's heatmap pipeline.", no_args_is_help=True)


@app.command("diagnose")
def diagnose(
    annotations: Annotated[Path, typer.Option(help="The dataset's annotations CSV.")],
    images: Annotated[Path, typer.Option(help="Root folder the CSV's image paths are relative to.")],
    dataset: Annotated[str, typer.Option(help="ms-cxr or generic (the readers of `cxrg bench`).")]
    = "ms-cxr",
    out: Annotated[Path, typer.Option(help="Output folder: diagnose.csv, diagnose.json, diagnose.png.")]
    = Path("runs/ldm-diagnose"),
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings (default: none, the frozen "
                                                    "model).")] = None,
    window: Annotated[int, typer.Option(min=1, help="Inference steps per timestep window.")] = 10,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")] = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layers (default: every "
                                               "cross-attention layer).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16.")] = "float32",
) -> None:
    """Score each cross-attention layer and timestep window alone (plus the settings' defaults)."""
    from rich.console import Console
    from rich.table import Table

    from cxrg.bench.datasets import read_dataset
    from cxrg.config import load_config
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.ldm.diagnose import DEFAULT_COLUMN, DEFAULT_ROW, _short, plot
    from cxrg.ldm.diagnose import diagnose as run_diagnosis
    from cxrg.ldm.loading import load_ldm
    from cxrg.runs import atomic_write_csv, atomic_write_text

    cfg = load_config()
    settings = HeatmapSettings().with_overrides(cfg.get("ldm"))
    data = read_dataset(dataset, annotations, images)
    ldm = load_ldm(weights, device=device, dtype=dtype)
    codebook = None
    if embeddings is not None:
        from cxrg.ldm.text import Codebook

        codebook, _ = Codebook.load(embeddings, ldm.fingerprint)
    chosen = [name.strip() for name in layers.split(",")] if layers else None
    result = run_diagnosis(ldm, data, settings, codebook, chosen, window, limit)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "diagnose.csv", ("layer", "window", "cnr", "miou"), result.table_rows())
    atomic_write_text(out / "diagnose.json", json.dumps(result.to_dict(), indent=2) + "\n")
    plot(result, out / "diagnose.png", title=f"{annotations.name}: per layer / timestep window")
    for name, values in (("CNR", result.cnr), ("mIoU", result.miou)):
        table = Table(title=f"{name} per layer (rows) and timestep window (columns), "
                            f"{result.samples} samples")
        table.add_column("layer")
        for column in result.columns:
            table.add_column(column.removeprefix("t="), justify="right")
        for r, row in enumerate(result.rows):
            table.add_row(_short(row), *[f"{values[r, c]:.2f}" for c in range(len(result.columns))])
        Console(width=200).print(table)
    layer, column, value = result.best("cnr")
    typer.echo(f"best CNR {value:.3f}: {_short(layer)}, {column}; the pipeline ({DEFAULT_ROW}, "
               f"{DEFAULT_COLUMN}): CNR {result.cnr[-1, -1]:.3f}, mIoU {result.miou[-1, -1]:.3f}; "
               f"{len(result.skipped)} skipped; files in {out}")
