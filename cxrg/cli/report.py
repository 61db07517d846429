"""`cxrg report RUN_DIR`: the HTML report of a bench run (RUN_DIR/report.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dir: Annotated[Path, typer.Argument(help="A `cxrg bench` run folder (its --out).")],
    annotations: Annotated[Path | None, typer.Option(help="The dataset's annotations CSV, when it moved "
                                                     "since the run (default: as in config.json).")] = None,
    images: Annotated[Path | None, typer.Option(help="The images root, when it moved since the run.")] = None,
    embed: Annotated[bool, typer.Option(help="Put every picture into report.html (one file to send; large "
                                        "for big runs) instead of RUN_DIR/report_files/.")] = False,
) -> None:
    """Write RUN_DIR/report.html: summary, CI chart, gallery of heatmaps with boxes, model comparison,
    failures. Opens from disk in any browser; no server, no network."""
    from cxrg.cli import say
    from cxrg.progress import progress
    from cxrg.report import write_report

    with progress("report", unit="samples") as bar:
        path = write_report(run_dir, annotations=annotations, images=images, embed=embed,
                            progress=lambda done, total: bar.update(done=done, total=total))
    say(f"report: {path}")
    typer.echo(path.resolve().as_uri())
