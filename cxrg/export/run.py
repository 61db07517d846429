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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import CxrgError, UsageError

FORMATS = ("dicom-seg", "coco")
SCORED_STATUSES = ("scored", "undefined")
SKIPPED_FIELDS = ("model", "sample_id", "reason")


@dataclass
class ExportResult:
    """What an export wrote and what it left out (with the reason), pair by pair."""

    out: Path
    written: list[Path] = field(default_factory=list)
    """The files written."""
    exported: int = 0
    """(model, sample) pairs written (a SEG each, or their boxes in a results file)."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """(model, sample, reason) of every pair left out; model '' for a sample left out of the ground truth."""

    def skip(self, model: str, sample_id: str, reason: str) -> None:
        self.skipped.append({"model": model, "sample_id": sample_id, "reason": reason})

    def summary(self, what: str) -> str:
        """'dicom-seg: 3 (model, sample) pairs written, 5 skipped (4 source is not DICOM, 1 not scored)'."""
        pairs = [row for row in self.skipped if row["model"]]
        reasons = Counter(row["reason"].split(":")[0] for row in pairs).most_common()
        text = (f"{what}: {self.exported} (model, sample) pairs written, {len(pairs)} skipped"
                + (f" ({', '.join(f'{n} {reason}' for reason, n in reasons)})" if reasons else ""))
        samples = len(self.skipped) - len(pairs)
        return text + (f"; {samples} samples without usable ground truth" if samples else "")


def full_size(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A saved (reduced) map at the image's (height, width): bilinear, NaN-aware, min-max normalised."""
    from PIL import Image

    from cxrg.geometry import normalise

    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == tuple(shape):
        return normalise(heatmap)
    height, width = shape
    valid = np.isfinite(heatmap)
    values = Image.fromarray(np.where(valid, heatmap, 0).astype(np.float32), mode="F")
    weights = Image.fromarray(valid.astype(np.float32), mode="F")
    v = np.asarray(values.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    m = np.asarray(weights.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.full(v.shape, np.nan, dtype=np.float32)
    keep = m >= 0.5
    out[keep] = v[keep] / m[keep]
    return normalise(out)


def read_run_for_export(run_dir: Path, annotations: Path | None = None, images: Path | None = None) -> Any:
    """The run as cxrg.report reads it (config, rows, samples with image paths and boxes)."""
    from cxrg.report.run import read_run

    return read_run(Path(run_dir), annotations, images)


def scored_heatmap(run: Any, store: Any, model: str, sample: Any, result: ExportResult) -> np.ndarray | None:
    """The pair's map at its image's size, or None after recording why there is none."""
    row = run.rows.get((model, sample.sample_id))
    if row is None:
        result.skip(model, sample.sample_id, "not scored: no row in per_sample.csv")
        return None
    if row.get("status") not in SCORED_STATUSES:
        result.skip(model, sample.sample_id, f"not scored: {row.get('status')}: {row.get('error', '')}")
        return None
    if not store.has(model, sample.sample_id):
        result.skip(model, sample.sample_id, "no saved heatmap: the run was benched with --no-save-heatmaps")
        return None
    heatmap, shape = store.load(model, sample.sample_id)
    return full_size(heatmap, shape)


def model_version(name: str) -> str:
    """The card version of the model as installed now (construction only, no weights), or ''."""
    from cxrg.registry import create_model, discover

    try:
        return str(create_model(name, discover()).card.version)
    except Exception:  # an uninstalled plugin, a model that cannot be constructed here
        return ""


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
