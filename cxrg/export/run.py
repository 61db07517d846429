"""`cxrg export RUN_DIR`: a finished bench run's saved heatmaps as viewer formats.

A bench run keeps each scored map in RUN_DIR/heatmaps/ at display size (cxrg.bench.heatmap_store: min-max
normalised, longer side at most `--heatmap-size`, 256 by default). Export brings a map back to its image's
own pixel grid by bilinear interpolation (NaN-aware: a pixel is NaN where most of its neighbourhood was)
and normalises it again; a SEG or box from a run is therefore as sharp as the saved map, no sharper. For
full-resolution objects, bench with a larger `--heatmap-size`, or ground the image with
`cxrg ground --format dicom-seg`.

Every (model, sample) pair is either written or skipped with its reason; the reasons are counted on
stderr and listed in OUT/skipped.csv, and the counts add up to the pairs of the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cxrg.errors import CxrgError, UsageError
from cxrg.export.saved import (  # noqa: F401  (full_size, read_run_for_export: importable from here)
    SKIPPED_FIELDS,
    ExportResult,
    full_size,
    model_version,
    read_run_for_export,
    scored_heatmap,
)

FORMATS = ("dicom-seg", "coco")


def write_dicom_segs(run_dir: Path, out: Path, annotations: Path | None = None,
                     images: Path | None = None) -> ExportResult:
    """A DICOM SEG per scored (model, sample) pair whose image is DICOM, in OUT as
    `<quoted sample id>.<model>.seg.dcm`; every other pair skipped with its reason."""
    from urllib.parse import quote

    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.export.dicom_seg import is_dicom_file, write_dicom_seg

    run = read_run_for_export(run_dir, annotations, images)
    store = HeatmapStore(run.path)
    result = ExportResult(Path(out))
    fingerprints = (run.config.get("fingerprints") or {}).get("models") or {}
    settings = run.config.get("ldm_settings") or {}
    for model in run.models:
        version = model_version(model)
        for sample in run.samples:
            if sample.image_path is None:
                result.skip(model, sample.sample_id, "no image: the dataset is not at hand")
                continue
            if not Path(sample.image_path).is_file():
                result.skip(model, sample.sample_id, f"no image: {sample.image_path} not found")
                continue
            if not is_dicom_file(sample.image_path):
                result.skip(model, sample.sample_id, "source is not DICOM")
                continue
            heatmap = scored_heatmap(run, store, model, sample, result)
            if heatmap is None:
                continue
            row = run.rows[(model, sample.sample_id)]
            try:
                path = write_dicom_seg(
                    sample.image_path, heatmap, None, phrase=sample.phrase or row.get("prompt", ""),
                    prompt=row.get("prompt", ""), model=model, model_version=version,
                    weights_fingerprint=str(fingerprints.get(model, "")),
                    out=Path(out) / f"{quote(sample.sample_id, safe='')}.{model}.seg.dcm",
                    otsu=bool((settings.get(model) or {}).get("otsu", False)))
            except CxrgError as exc:
                result.skip(model, sample.sample_id, f"refused: {exc.one_line()}")
                continue
            result.written.append(path)
            result.exported += 1
    return result


def export_run(run_dir: Path, fmt: str, out: Path | None = None, annotations: Path | None = None,
               images: Path | None = None) -> ExportResult:
    """`cxrg export` as a library call: OUT (default RUN_DIR/export/<format>) gets the files and
    skipped.csv; the counts are printed on stderr."""
    from cxrg.runs import atomic_write_csv, say

    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r}", hint=f"choose one of: {', '.join(FORMATS)}")
    out = Path(out) if out is not None else Path(run_dir) / "export" / fmt
    if fmt == "dicom-seg":
        result = write_dicom_segs(Path(run_dir), out, annotations, images)
    else:
        from cxrg.export.coco import write_coco

        result = write_coco(Path(run_dir), out, annotations, images)
    if result.skipped:
        atomic_write_csv(out / "skipped.csv", SKIPPED_FIELDS, result.skipped)
    else:
        (out / "skipped.csv").unlink(missing_ok=True)
    say(result.summary(fmt) + (f"; reasons in {out / 'skipped.csv'}" if result.skipped else ""))
    print(f"{fmt}: {out}", file=sys.stdout, flush=True)
    return result
