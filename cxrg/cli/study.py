"""`cxrg study`: the reader study of Appendix J (create, serve, export, analyse)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import QUIET

app = typer.Typer(help="Reader study: raters score heatmaps 1-5 in a browser; scores vs CNR/mIoU.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)


@app.command("create")
def create(
    models: Annotated[str, typer.Option(help="Comma-separated models to rate, e.g. ldm,biovil-t; the first "
                                        "two are the default pair of `study analyse`.")],
    out: Annotated[Path, typer.Option(help="The new study folder.")],
    runs: Annotated[list[Path] | None, typer.Option("--runs", help="A `cxrg bench` run folder (repeat, or "
                                                    "list more folders after the options).")] = None,
    more_runs: Annotated[list[Path] | None, typer.Argument(help="More run folders.", show_default=False)]
    = None,
    per_class: Annotated[int, typer.Option(min=1, help="Cases per class (fewer when a class has fewer).")]
    = 50,
    seed: Annotated[int, typer.Option(help="Seed of the draw and of every rater's order.")] = 0,
    image_size: Annotated[int, typer.Option(min=128, help="Longer side of the radiographs shown, pixels.")]
    = 1024,
    quiet: QUIET = False,
) -> None:
    """Draw cases from bench runs (per class, spread over locations) into a study folder."""
    from cxrg.cli import say
    from cxrg.progress import quiet as set_quiet
    from cxrg.study.create import create_study

    set_quiet(quiet)
    names = [name.strip() for name in models.split(",") if name.strip()]
    report = create_study([*(runs or []), *(more_runs or [])], names, out, per_class, seed, image_size)
    for line in report.lines():
        say(line)


@app.command("serve")
def serve(
    study: Annotated[Path, typer.Argument(help="The study folder.")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but the loopback (127.0.0.0/8, "
                                      "::1, localhost) lets other machines rate (and read the study's "
                                      "images): use with care; '' or 0.0.0.0 is every interface.")]
    = "127.0.0.1",
    timeout: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds a request may take to arrive "
                                           "(line, headers and body): a slow client is cut off.")] = 10.0,
) -> None:
    """Serve the rating page (http://127.0.0.1:8765/ by default)."""
    from cxrg.study.server import serve as run_server

    run_server(study, host, port, timeout)


@app.command("export")
def export(
    study: Annotated[Path, typer.Argument(help="The study folder.")],
    out: Annotated[Path | None, typer.Option(help="CSV file (default STUDY/ratings.csv).")] = None,
    history: Annotated[bool, typer.Option(help="Every score ever given, changes included.")] = False,
) -> None:
    """Write the ratings as CSV."""
    from cxrg.cli import say
    from cxrg.study.analyse import export as export_ratings

    path, rows = export_ratings(study, out, history)
    say(f"{rows} rating(s) written to {path}")


@app.command("analyse")
def analyse(
    study: Annotated[Path, typer.Argument(help="The study folder.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default STUDY/analysis).")] = None,
    pair: Annotated[str | None, typer.Option(help="Two models A,B for the paired delta analysis (A - B); "
                                             "default: the first two of --models at create.")] = None,
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap resamples for the agreement CIs.")]
    = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Scores per rater and model, Spearman rho vs CNR/mIoU, paired deltas, agreement; results.md/png."""
    from cxrg.cli import say
    from cxrg.study.analyse import analyse as run_analysis

    names = [name.strip() for name in pair.split(",")] if pair else None
    _, folder = run_analysis(study, out, names, resamples, seed)
    print((folder / "results.md").read_text(encoding="utf-8"))
    say(f"results in {folder}")
