"""`cxrg ground IMAGE PROMPT`: where in the image is the phrase? Heatmap, overlay and JSON per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import OPTION_HELP


def ground(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="An image file (PNG, JPEG, DICOM), a folder, "
                                         "or a glob.")],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="The phrase, e.g. 'left pleural "
                                          "effusion'.")],
    model: Annotated[str, typer.Option(help="Model id (see `cxrg models list`); `prior` needs no weights.")]
    = "ldm",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("grounding"),
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda, ...")] = None,
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON (the prior's `lut` option).")] = None,
    dtype: Annotated[str | None, typer.Option(help="LDM precision: float32 (default), bfloat16, float16.")]
    = None,
    embeddings: Annotated[Path | None, typer.Option(help="Tuned embeddings for --model ldm.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help=OPTION_HELP)] = None,
    exact_prompt: Annotated[bool, typer.Option(help="Use PROMPT as typed (no phrase normalisation).")]
    = False,
    batch_size: Annotated[str | None, typer.Option(help="Images of a folder per model call: N or auto "
                                                   "(default: [bench] batch_size in cxrg.toml, else auto).")]
    = None,
) -> None:
    """Ground PROMPT on IMAGE: OUT/<stem>.<model>.heatmap.npy, .overlay.png and .json per image."""
    from cxrg.config import load_config
    from cxrg.grounding import ground_images
    from cxrg.loading import load_models, parse_option_pairs

    cfg = load_config(cli={"weights": weights, "device": device})
    shortcuts = {"lut": lut, "dtype": dtype, "embeddings": embeddings}
    loaded, _, _ = load_models([model], cfg, cfg.get("weights"), cfg.get("device", "cpu"),
                               parse_option_pairs(option), shortcuts)
    from cxrg.bench.batching import configured_batch_size, resolve_batch_size

    requested, _ = configured_batch_size(cfg, batch_size, cfg.get("device", "cpu"))
    images_per_call, _ = resolve_batch_size(requested, loaded, cfg.get("device", "cpu"))
    ground_images(loaded[model], image, prompt, out, exact_prompt, images_per_call)


def demo_image() -> None:
    """Print the path of a real chest radiograph shipped with pydicom-data (RG1_UNCR.dcm, CR PA, MIT)."""
    from cxrg.demo import demo_image_path

    typer.echo(str(demo_image_path()))
