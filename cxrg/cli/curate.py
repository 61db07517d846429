"""`cxrg curate`: reports -> '{location} {pathology}' training and test sets; MS-CXR -> MS-CXR-loc."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxrg.cli import QUIET
from cxrg.progress import quiet as set_quiet
from cxrg.protocol import EXTRACTOR_HELP


def register(app: typer.Typer) -> None:
    """Add the curate command to the main app."""
    app.command("curate")(curate)


def curate(
    reports: Annotated[Path | None, typer.Option(
        help="Reports CSV: generic (id, text, label [, image]) or the IU collection's indiana_reports.csv.",
        rich_help_panel="Input (one of)")] = None,
    mimic_reports: Annotated[Path | None, typer.Option(
        help="MIMIC-CXR reports folder (files/pNN/pSUBJECT/sSTUDY.txt); needs --chexpert.",
        rich_help_panel="Input (one of)")] = None,
    ms_cxr: Annotated[Path | None, typer.Option(
        help="MS-CXR CSV to rewrite into MS-CXR-loc.", rich_help_panel="Input (one of)")] = None,
    out: Annotated[Path, typer.Option(help="Run folder for the outputs.")] = Path("runs/curate"),
    protocol: Annotated[str | None, typer.Option(
        help="paper (default: RadGraph-XL alone, sentence-level negation) or cxrg (cxrg's improvements); "
             "each choice below overrides it (docs/decisions.md).")] = None,
    extractor: Annotated[str | None, typer.Option(help=EXTRACTOR_HELP)] = None,
    negation: Annotated[str | None, typer.Option(
        help="sentence (paper: a negation/resolution word anywhere in the sentence drops it; no uncertainty "
             "filter) or mention (cxrg: per mention within its clause, plus uncertainty).")] = None,
    location_mappings: Annotated[str | None, typer.Option(
        help="list (paper: areas outside the 27-location list such as 'retrocardiac' are dropped, logged) "
             "or extended (cxrg: retrocardiac = left lower).")] = None,
    radgraph_dir: Annotated[Path | None, typer.Option(
        help="Folder holding radgraph-xl/{config.json, vocabulary/, weights.th} "
             "(default $CXRG_HOME/radgraph).")] = None,
    device: Annotated[str, typer.Option(help="Device for RadGraph-XL: cpu, cuda, cuda:1.")] = "cpu",
    report_format: Annotated[str, typer.Option(
        "--format", help="Format of --reports: auto, generic or iu.")] = "auto",
    chexpert: Annotated[Path | None, typer.Option(
        help="mimic-cxr-2.0.0-chexpert.csv (labels).", rich_help_panel="MIMIC-CXR")] = None,
    metadata: Annotated[Path | None, typer.Option(
        help="mimic-cxr-2.0.0-metadata.csv (views, images).", rich_help_panel="MIMIC-CXR")] = None,
    views: Annotated[str, typer.Option(
        help="Comma-separated ViewPositions to keep.", rich_help_panel="MIMIC-CXR")] = "PA",
    studies: Annotated[Path | None, typer.Option(
        help="Only these study ids (one per line, or a CSV with study_id).",
        rich_help_panel="MIMIC-CXR")] = None,
    uncertain: Annotated[str, typer.Option(
        help="CheXpert -1.0 labels count as negative or positive.",
        rich_help_panel="MIMIC-CXR")] = "negative",
    labels: Annotated[str, typer.Option(
        help="one: keep reports with exactly one of the 8 pathologies positive (the paper); all: every "
             "positive one.")] = "one",
    unit: Annotated[str, typer.Option(help="One sample per report (locations merged) or per sentence.")
                    ] = "report",
    sections: Annotated[str, typer.Option(help="Report sections to read.")] = "findings,impression",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N reports.")] = None,
    quiet: QUIET = False,
) -> None:
    """Curate reports into '{location} {pathology}' samples (manifest, skip log, summary, figure)."""
    given = dict(locals())  # the parameters, exactly as cxrg.curation.run takes them (and --quiet)
    set_quiet(given.pop("quiet"))
    import cxrg.curation

    cxrg.curation.run(**given)
