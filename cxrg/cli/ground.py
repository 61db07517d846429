"""`cxrg ground IMAGE PROMPT`: where in the image is the phrase? Heatmap, overlay and JSON per image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def ground(
    image: Annotated[str, typer.Argument(help="An image file (PNG, JPEG, DICOM), a folder, or a glob.")],
    prompt: Annotated[str, typer.Argument(help="The phrase, e.g. 'left lower pleural effusion'.")],
    model: Annotated[str | None, typer.Option(help="Model id (see `cxrg models list`); default: ldm when "
                                              "its weights and tuned embeddings are present, else prior.")
                     ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("grounding"),
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default $CXRG_HOME).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON (same as $CXRG_LUT).")] = None,
    dtype: Annotated[str, typer.Option(help="LDM precision: float32, bfloat16 or float16.")] = "float32",
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings for --model ldm (same as "
                                                    "$CXRG_EMBEDDINGS).")] = None,
) -> None:
    """Ground PROMPT on IMAGE: writes OUT/<stem>.heatmap.npy, <stem>.overlay.png and <stem>.json."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cxrg.cli import say
    from cxrg.errors import CxrgError, UsageError
    from cxrg.grounding import collect_images, ground_image
    from cxrg.registry import load_model

    paths = collect_images(image)
    if lut is not None:
        from cxrg.anatomy.lut import Lut

        Lut.load(lut)
        os.environ["CXRG_LUT"] = str(lut.resolve())
    weights = weights or (Path(os.environ["CXRG_HOME"]) if os.environ.get("CXRG_HOME") else None)
    set_model_options(dtype, embeddings)
    if model is None:
        model = default_model(weights)
    loaded = load_model(model, weights_dir=weights, device=device)
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
        err.print(f"{len(paths) - failed} of {len(paths)} images grounded, {failed} skipped",
                  markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


def set_model_options(dtype: str, embeddings: Path | None) -> None:
    """Model settings travel in the environment (see cxrg.models.ldm), checked here for a clear error."""
    from cxrg.errors import UsageError

    if dtype not in ("float32", "bfloat16", "float16"):
        raise UsageError(f"unknown --dtype {dtype!r}", hint="choose float32, bfloat16 or float16")
    os.environ["CXRG_DTYPE"] = dtype
    if embeddings is not None:
        if not embeddings.is_file():
            raise UsageError("tuned embeddings file not found", where=str(embeddings))
        os.environ["CXRG_EMBEDDINGS"] = str(embeddings.resolve())


def default_model(weights: Path | None) -> str:
    """ldm when its weights and tuned embeddings are present, else prior (with a note saying why)."""
    from cxrg.cli import say
    from cxrg.ldm.weights import WeightPaths, weights_root

    paths = WeightPaths(weights_root(weights))
    missing = [str(path) for _, path, present, _ in paths.status() if not present]
    tuned = os.environ.get("CXRG_EMBEDDINGS") or paths.tuned_embeddings
    if not Path(tuned).is_file():
        missing.append(str(tuned))
    if not missing:
        return "ldm"
    say(f"cxrg: note: using --model prior (image-blind): the ldm model needs {missing[0]}"
        + (f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else "")
        + "; see `cxrg weights status`")
    return "prior"


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
