"""What both exports of a bench run share: the run read back, each scored map brought to its image's own
pixel grid (see cxrg.export.run), and the written/skipped account of every (model, sample) pair.

Its own module so that run.py (the dispatcher) and coco.py import it without importing each other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
