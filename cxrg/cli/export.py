"""`cxrg export RUN_DIR --format dicom-seg|coco`: a bench run's saved heatmaps in viewer formats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    run_dir: Annotated[Path, typer.Argument(help="A `cxrg bench` run folder (its --out).")],
    fmt: Annotated[str, typer.Option("--format", help="dicom-seg (a DICOM Segmentation per scored pair whose "
                                     "image is DICOM) or coco (ground truth + each model's boxes).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: RUN_DIR/export/FORMAT).")] = None,
    annotations: Annotated[Path | None, typer.Option(help="The dataset's annotations CSV, when it moved "
                                                     "since the run (default: as in config.json).")] = None,
    images: Annotated[Path | None, typer.Option(help="The images root, when it moved since the run.")] = None,
) -> None:
    """Convert RUN_DIR's saved heatmaps: DICOM SEG files for OHIF / 3D Slicer, or COCO JSON for
    pycocotools. Counts of written and skipped pairs on stderr, reasons in OUT/skipped.csv."""
    from cxrg.export.run import export_run

    export_run(run_dir, fmt.strip().lower(), out, annotations, images)
