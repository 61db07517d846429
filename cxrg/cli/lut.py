"""`cxrg lut build | show`: the anatomical atlas of 27 locations as 2-D Gaussians."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Build or show the anatomical Gaussian look-up table (LUT).", no_args_is_help=True)


@app.command("build")
def build(
    imagenome: Annotated[Path, typer.Option(help="Chest ImaGenome gold_bbox_coordinate_annotations_"
                                                 "1000images.csv")],
    out: Annotated[Path, typer.Option(help="Where to write the LUT JSON.")] = Path("lut.json"),
) -> None:
    """Build the LUT from Chest ImaGenome's gold boxes: a Gaussian per box, averaged per region.

    Each box gives mu = its centre and sigma = its extent / 6 (paper, eq. 6) in the 512 model frame."""
    from cxrg.anatomy import build_lut_from_imagenome

    lut = build_lut_from_imagenome(imagenome)
    lut.save(out)
    build_info = lut.metadata.get("build", {})
    skipped = build_info.get("skipped", {})
    typer.echo(f"{build_info.get('rows', '?')} rows: {build_info.get('used', '?')} boxes used from "
               f"{build_info.get('images', '?')} images, {build_info.get('other_regions', '?')} of other "
               f"regions, {sum(skipped.values())} skipped")
    for reason, count in skipped.items():
        typer.echo(f"  skipped {count}: {reason}")
    typer.echo(f"LUT written to {out}")


@app.command("show")
def show(
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("atlas.png"),
    lut: Annotated[Path | None, typer.Option(help="LUT JSON (default: the shipped approximation).")] = None,
    image: Annotated[Path | None, typer.Option(help="Radiograph to draw on (default: pydicom-data's "
                                               "RG1_UNCR.dcm).")] = None,
) -> None:
    """Draw the atlas over a chest radiograph, one panel per location (the paper's Figure 3)."""
    from cxrg.anatomy import Lut, draw_atlas
    from cxrg.demo import demo_image_path
    from cxrg.images import read_image

    table = Lut.load(lut) if lut else Lut.default()
    draw_atlas(table, read_image(image or demo_image_path()), out)
    if table.metadata.get("approximation"):
        typer.echo("note: this is the shipped approximate LUT; build the real one with `cxrg lut build`",
                   err=True)
    typer.echo(f"atlas written to {out}")
