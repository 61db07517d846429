"""`cxrg ground IMAGE PROMPT`: where in the image is the phrase? Heatmap, overlay and JSON per image."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer


def ground(
    image: Annotated[str, typer.Argument(help="An image file (PNG, JPEG, DICOM), a folder, or a glob.")],
    prompt: Annotated[str, typer.Argument(help="The phrase, e.g. 'left lower pleural effusion'.")],
    model: Annotated[str, typer.Option(help="Model id (see `cxrg models list`); `prior` needs no weights.")]
    = "ldm",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("grounding"),
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda, ...")] = None,
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON (same as $CXRG_LUT).")] = None,
    dtype: Annotated[str | None, typer.Option(help="LDM precision: float32 (default), bfloat16, float16.")]
    = None,
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings for --model ldm (same as "
                                                    "$CXRG_EMBEDDINGS).")] = None,
) -> None:
    """Ground PROMPT on IMAGE: writes OUT/<stem>.heatmap.npy, <stem>.overlay.png and <stem>.json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cxrg.cli import say
    from cxrg.config import load_config
    from cxrg.errors import CxrgError, UsageError
    from cxrg.grounding import collect_images, ground_image
    from cxrg.registry import load_model

    paths = collect_images(image)
    settings = apply_model_settings(load_config(), weights, device, dtype, embeddings, lut)
    if model == "ldm":
        require_ldm(settings.weights)
    loaded = load_model(model, weights_dir=settings.weights, device=settings.device)
    if loaded.card.uses_ground_truth:
        raise UsageError(f"model '{model}' needs ground-truth boxes", hint="use it with `cxrg bench`")

    err = Console(stderr=True)
    stems: dict[str, Path] = {}
    failed = 0
    with Progress(TextColumn("ground"), BarColumn(), MofNCompleteColumn(), console=err, transient=True,
                  disable=len(paths) == 1 or not err.is_terminal) as bar:
        task = bar.add_task("images", total=len(paths))
        for path in paths:
            stem = path.name.split(".")[0]
            try:
                if stem in stems:
                    raise CxrgError(f"output name '{stem}' is already used by {stems[stem]}",
                                    where=str(path), hint="ground these images into separate --out folders")
                stems[stem] = path
                summary = ground_image(loaded, path, prompt, out, stem)
                peak = summary["peak"]
                typer.echo(f"{path}: peak at x={peak['x']}, y={peak['y']} -> {out / stem}.overlay.png"
                           if peak else f"{path}: the model saw no pixel -> {out / stem}.json")
            except CxrgError as exc:
                if len(paths) == 1:
                    raise
                failed += 1
                say(f"cxrg: skipped {path}: {exc.one_line()}")
            bar.advance(task)
    if len(paths) > 1 or failed:
        say(f"{len(paths) - failed} of {len(paths)} images grounded, {failed} skipped")
    if failed:
        raise typer.Exit(1)


@dataclass(frozen=True)
class ModelSettings:
    weights: Path | None
    device: str
    dtype: str


def apply_model_settings(cfg, weights: Path | None, device: str | None, dtype: str | None,
                         embeddings: Path | None, lut: Path | None) -> ModelSettings:
    """Command line over cxrg.toml over defaults. Model settings travel in the environment (see
    cxrg.models.ldm) so that every model keeps the plain load(weights, device) protocol."""
    from cxrg.config import pick
    from cxrg.errors import UsageError

    dtype = pick(dtype, cfg, "dtype", "float32")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"unknown dtype {dtype!r}", hint="choose float32, bfloat16 or float16")
    os.environ["CXRG_DTYPE"] = dtype
    embeddings = pick(embeddings, cfg, "embeddings")
    if embeddings is not None:
        if not Path(embeddings).is_file():
            raise UsageError("tuned embeddings file not found", where=str(embeddings))
        os.environ["CXRG_EMBEDDINGS"] = str(Path(embeddings).resolve())
    lut = pick(lut, cfg, "lut")
    if lut is not None:
        from cxrg.anatomy.lut import Lut

        Lut.load(lut)  # a bad file fails here, before any work
        os.environ["CXRG_LUT"] = str(Path(lut).resolve())
    import json

    table = cfg.get("ldm")
    if table:
        from cxrg.ldm.config import HeatmapSettings

        HeatmapSettings().with_overrides(table)  # a bad [ldm] table fails here, with its key named
        os.environ["CXRG_LDM_SETTINGS"] = json.dumps(table)
    weights = pick(weights, cfg, "weights")
    return ModelSettings(Path(weights) if weights else None, pick(device, cfg, "device", "cpu"), dtype)


def require_ldm(weights: Path | None) -> None:
    """One clear message when the tuned model cannot run: what is missing and which command fixes it."""
    from cxrg.errors import MissingWeightsError
    from cxrg.ldm.weights import WeightPaths, weights_root

    paths = WeightPaths(weights_root(weights))
    missing = [(what, path) for what, path, present, _ in paths.status() if not present]
    if missing:
        what, path = missing[0]
        more = f" (and {len(missing) - 1} more file(s))" if len(missing) > 1 else ""
        raise MissingWeightsError(f"the ldm model needs its weights: {what} not found{more}",
                                  where=str(path),
                                  hint="run `cxrg weights fetch` (or place them as `cxrg weights status` "
                                       "lists), then `cxrg tune`; or use --model prior (no weights needed)")
    tuned = Path(os.environ.get("CXRG_EMBEDDINGS") or paths.tuned_embeddings)
    if not tuned.is_file():
        raise MissingWeightsError("the ldm model needs tuned embeddings", where=str(tuned),
                                  hint="run `cxrg tune` (it installs them), or pass --embeddings FILE; "
                                       "or use --model ldm-frozen (LDM without tuning) or --model prior "
                                       "(no weights)")


def demo_image() -> None:
    """Print the path of a real chest radiograph shipped with pydicom-data (RG1_UNCR.dcm, CR PA, MIT)."""
    typer.echo(str(demo_image_path()))


def demo_image_path() -> Path:
    from cxrg.errors import CxrgError

    try:
        import data_store
    except ImportError as exc:
        raise CxrgError("pydicom-data is not installed", hint="pip install pydicom-data") from exc
    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    if not path.is_file():
        found = list(Path(data_store.__file__).parent.rglob("RG1_UNCR.dcm"))
        if not found:
            raise CxrgError("RG1_UNCR.dcm not found in pydicom-data", where=str(path.parent))
        path = found[0]
    return path
