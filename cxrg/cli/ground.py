"""`cxrg ground IMAGE PROMPT`: where in the image is the phrase? Heatmap, overlay and JSON per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import OPTION_HELP, QUIET


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
    fmt: Annotated[list[str] | None, typer.Option("--format", help="Also write: dicom-seg (a DICOM "
                                                  "Segmentation of each DICOM image; docs/viewer.md).")]
    = None,
    quiet: QUIET = False,
    batch_size: Annotated[str | None, typer.Option(help="Images of a folder per model call: N or auto "
                                                   "(default: [bench] batch_size in cxrg.toml, else auto).")]
    = None,
) -> None:
    """Ground PROMPT on IMAGE: OUT/<stem>.<model>.heatmap.npy, .overlay.png and .json per image."""
    from cxrg.api import open_model
    from cxrg.bench.batching import configured_batch_size, resolve_batch_size
    from cxrg.config import load_config
    from cxrg.export.grounding import ground_formats, ground_with_formats
    from cxrg.loading import parse_option_pairs
    from cxrg.progress import quiet as set_quiet

    formats = ground_formats(fmt)
    set_quiet(quiet)
    cfg = load_config(cli={"weights": weights, "device": device})
    requested, _ = configured_batch_size(cfg, batch_size, cfg.get("device", "cpu"))  # refused before loading
    loaded = open_model(model, weights, device, {"lut": lut, "dtype": dtype, "embeddings": embeddings},
                        parse_option_pairs(option), cfg)
    images_per_call, _ = resolve_batch_size(requested, {model: loaded.model}, cfg.get("device", "cpu"))
    ground_with_formats(loaded.model, image, prompt, out, exact_prompt, formats,
                        loaded.fingerprint if formats else "", images_per_call)


def demo_image() -> None:
    """Print the path of a real chest radiograph shipped with pydicom-data (RG1_UNCR.dcm, CR PA, MIT)."""
    from cxrg.demo import demo_image_path

    typer.echo(str(demo_image_path()))
