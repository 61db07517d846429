"""`cxrg curate` as a library call (`cxrg.curation.run(...)`): reports -> '{location} {pathology}' samples,
or MS-CXR -> MS-CXR-loc, with the run folder, skip log and summary. The command only parses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from cxrg.runs import say


def run(
        reports: Path | None = None,
        mimic_reports: Path | None = None,
        ms_cxr: Path | None = None,
        out: Path = Path('runs/curate'),
        protocol: str | None = None,
        extractor: str | None = None,
        negation: str | None = None,
        location_mappings: str | None = None,
        radgraph_dir: Path | None = None,
        device: str = 'cpu',
        report_format: str = 'auto',
        chexpert: Path | None = None,
        metadata: Path | None = None,
        views: str = 'PA',
        studies: Path | None = None,
        uncertain: str = 'negative',
        labels: str = 'one',
        unit: str = 'report',
        sections: str = 'findings,impression',
        limit: int | None = None,
) -> None:
    """Curate reports into '{location} {pathology}' samples (manifest, skip log, summary, figure)."""
    from cxrg.errors import UsageError

    given = [name for name, value in (("--reports", reports), ("--mimic-reports", mimic_reports),
                                      ("--ms-cxr", ms_cxr)) if value is not None]
    if len(given) != 1:
        raise UsageError("give exactly one input: --reports, --mimic-reports or --ms-cxr"
                         + (f" (got {', '.join(given)})" if given else ""),
                         hint="see `cxrg curate --help`")
    if uncertain not in ("negative", "positive"):
        raise UsageError(f"--uncertain must be negative or positive, not {uncertain!r}")
    if report_format not in ("auto", "generic", "iu"):
        raise UsageError(f"--format must be auto, generic or iu, not {report_format!r}")
    if mimic_reports is not None and chexpert is None:
        raise UsageError("--mimic-reports needs --chexpert (mimic-cxr-2.0.0-chexpert.csv)")
    if mimic_reports is None and any(v is not None for v in (chexpert, metadata, studies)):
        raise UsageError("--chexpert, --metadata and --studies go with --mimic-reports")

    from cxrg.config import load_config
    from cxrg.protocol import resolve

    choices = resolve("curate", {"extractor": extractor, "negation": negation,
                                 "location_mappings": location_mappings}, protocol, load_config(warn=False))
    extractor = choices["extractor"]
    chosen, note = protocol_extractor(choices, radgraph_dir, device)
    if note:
        say(f"cxrg: note: {note}")
    if ms_cxr is not None:
        _ms_cxr(ms_cxr, out, chosen, extractor, choices)
        return
    _reports(reports=reports, report_format=report_format, mimic_reports=mimic_reports, chexpert=chexpert,
             metadata=metadata, views=views, studies=studies, uncertain=uncertain, labels=labels, unit=unit,
             sections=sections, limit=limit, out=out, chosen=chosen, extractor=extractor, choices=choices)


def protocol_extractor(choices: Any, radgraph_dir: Path | None = None, device: str = "cpu"
                       ) -> tuple[Any, str]:
    """The resolved extractor; when the protocol chose RadGraph-XL and it is missing, the error says so."""
    from cxrg.curation.extractors import make_extractor
    from cxrg.errors import MissingWeightsError

    try:
        return make_extractor(choices["extractor"], radgraph_dir, device,
                              mappings=choices["location_mappings"])
    except MissingWeightsError as exc:
        if choices.sources["extractor"].startswith("protocol"):
            exc.what = (f"the {choices.protocol} protocol extracts locations with RadGraph-XL alone: "
                        f"{exc.what}")
            exc.hint = (exc.hint or "") + "; or --protocol cxrg (auto: RadGraph-XL when found, else rules)"
        raise


def _reports(*, reports: Path | None, report_format: str, mimic_reports: Path | None, chexpert: Path | None,
             metadata: Path | None, views: str, studies: Path | None, uncertain: str, labels: str, unit: str,
             sections: str, limit: int | None, out: Path, chosen: Any, extractor: str, choices: Any) -> None:
    import itertools

    from cxrg.curation.outputs import write_all
    from cxrg.curation.pipeline import Curator
    from cxrg.curation.reports import is_iu_csv, read_generic, read_iu, read_mimic, read_study_list
    from cxrg.errors import UsageError
    from cxrg.progress import progress
    from cxrg.runs import RunDir, mark_complete, mark_incomplete

    section_names = [name.strip().lower() for name in sections.split(",") if name.strip()]
    if not section_names:
        raise UsageError("--sections is empty", hint="e.g. --sections findings,impression")
    curator = Curator(chosen, label_rule=labels, unit=unit, section_names=section_names,
                      negation=choices["negation"], style=choices["prompt_style"])
    source: dict[str, Any]
    if reports is not None:
        kind = report_format
        if kind == "auto":
            kind = "iu" if is_iu_csv(reports) else "generic"
        total, stream = read_iu(reports) if kind == "iu" else read_generic(reports)
        source = {"reports": str(reports.resolve()), "format": kind}
    else:
        assert mimic_reports is not None and chexpert is not None
        allowed = read_study_list(studies) if studies is not None else None
        view_list = [v.strip() for v in views.split(",") if v.strip()]
        if not view_list:
            raise UsageError("--views is empty", hint="e.g. --views PA or --views PA,AP")
        total, stream = read_mimic(mimic_reports, chexpert, metadata, views=view_list, studies=allowed,
                                   uncertain_positive=uncertain == "positive")
        source = {"mimic_reports": str(mimic_reports.resolve()), "chexpert": str(chexpert.resolve()),
                  "metadata": str(metadata.resolve()) if metadata else None, "views": view_list,
                  "studies": str(studies) if studies else None, "uncertain": uncertain}
        if metadata is None:
            say("cxrg: note: no --metadata: views are not checked and samples have no image")
    if limit is not None:
        stream = itertools.islice(stream, limit)
        total = min(total, limit)
    config = {**source, "extractor": chosen.name, "extractor_option": extractor, "labels": labels,
              "unit": unit, "sections": section_names, "limit": limit, **choices.record()}
    run = RunDir(out, "curate", config, lock=True)
    mark_incomplete(run.path, "curate")  # removed after the last output: readers refuse a half-written run
    with progress("curate", total=total, unit="reports") as bar:
        result = curator.run(stream, progress=bar.advance)
    info = write_all(result, run.path, source)
    mark_complete(run.path)
    run.logger.info("%d reports: %d kept; skipped %s", result.reports.total, result.reports.kept,
                    dict(result.reports.skipped))
    run.logger.info("%d sentences examined: %d kept; skipped %s", result.sentences.total,
                    result.sentences.kept, dict(result.sentences.skipped))
    run.logger.info("%d samples written", len(result.samples))
    _print_summary(info)
    say(f"outputs in {run.path} (manifest.csv, manifest.jsonl, skips.csv, summary.md, locations.png)")
    run.close()


def _print_summary(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    console.print(f"{info['samples']} samples, {info['locations']} locations, "
                  f"{info['pathologies']} pathologies (extractor {info['extractor']})"
                  + (f"; {info['samples_without_image']} without an image_path (tune skips them)"
                     if info.get("samples_without_image") else ""))
    table = Table("level", "total", "kept", "skipped: reason (count)")
    for level in ("reports", "labels", "sentences"):
        tally = info[level]
        reasons = "; ".join(f"{reason} ({count})" for reason, count in tally["skipped"].items())
        table.add_row(level, str(tally["total"]), str(tally["kept"]), reasons or "-")
    console.print(table)
    per = Table("pathology", "samples")
    for pathology, count in info["samples_per_pathology"].items():
        per.add_row(pathology, str(count))
    console.print(per)
    for items in info["examples"].values():
        for item in items[:1]:
            console.print(f"  {item['prompt']}  <-  {item['sentence'][:100]}", markup=False, highlight=False)


def _ms_cxr(path: Path, out: Path, chosen: Any, extractor: str, choices: Any) -> None:
    from cxrg.curation.mscxr import count_lines, to_ms_cxr_loc, write_ms_cxr_loc
    from cxrg.runs import RunDir, mark_complete, mark_incomplete

    run = RunDir(out, "curate", {"ms_cxr": str(path.resolve()), "extractor": chosen.name,
                                 "extractor_option": extractor, **choices.record()}, lock=True)
    mark_incomplete(run.path, "curate")
    result = to_ms_cxr_loc(path, chosen, choices["prompt_style"])
    target = write_ms_cxr_loc(result, run.path, path)
    mark_complete(run.path)
    total, kept = len(result.phrases), len(result.kept)
    run.logger.info("%d phrases: %d kept, dropped %s; %d phrases merged into %d samples (same image and "
                    "prompt); %d phrases found with several image paths (kept apart)", total, kept,
                    dict(result.dropped), result.shared_prompts, result.merged_samples, result.split_paths)
    print(f"{total} phrases: {kept} kept, {total - kept} dropped")
    for line in count_lines(result):
        print(line)
    if result.shared_prompts:
        print(f"  {result.shared_prompts} kept phrases share an image and a prompt: one sample each "
              f"(loc_pairs=phrase), {result.merged_samples} samples with loc_pairs=merged")
    if result.split_paths:
        print(f"  {result.split_paths} (dicom_id, phrase) pairs have several image paths: kept apart")
    for reason, count in result.dropped.most_common():
        print(f"  dropped {count}: {reason}")
    say(f"MS-CXR-loc written to {target} (dropped phrases in {run.path / 'dropped.csv'})")
    run.close()
