"""Heatmaps kept beside a bench run, so a run can be looked at (report, reader study) after it ended.

Layout: RUN_DIR/heatmaps/<model>/<quoted sample_id>.npz, one file per (model, sample), written atomically
when the pair is scored; a resumed run keeps the files of the pairs it keeps. Each file holds

- ``heatmap``: float16, the map *as scored* (min-max normalised to [0, 1], NaN where the model saw no
  pixel), reduced so that its longer side is at most ``max_side`` pixels (default 256) by area averaging
  that ignores NaN (a reduced pixel is NaN only when most of its area was NaN);
- ``original_shape``: the image's (height, width), so the map can be laid over the image at any scale.

The reduced size is a display size: scores are always computed on the full-size map, never on these.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from cxrg.runs import atomic_write_bytes

FOLDER = "heatmaps"
DEFAULT_MAX_SIDE = 256


def sample_file_name(sample_id: str) -> str:
    """A file name for a sample id that is unique, reversible and safe on every file system."""
    return quote(sample_id, safe="") + ".npz"


def sample_id_from_file(name: str) -> str:
    return unquote(name.removesuffix(".npz"))


def reduce(heatmap: np.ndarray, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Area-average `heatmap` so its longer side is at most `max_side`; NaN-aware; float32 out."""
    from PIL import Image

    heatmap = np.asarray(heatmap, dtype=np.float32)
    h, w = heatmap.shape
    scale = max_side / max(h, w)
    if scale >= 1:
        return heatmap.copy()
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    valid = np.isfinite(heatmap)
    values = Image.fromarray(np.where(valid, heatmap, 0).astype(np.float32), mode="F")
    weights = Image.fromarray(valid.astype(np.float32), mode="F")
    v = np.asarray(values.resize(size, Image.Resampling.BOX), dtype=np.float32)
    m = np.asarray(weights.resize(size, Image.Resampling.BOX), dtype=np.float32)
    out = np.full(v.shape, np.nan, dtype=np.float32)
    keep = m >= 0.5
    out[keep] = v[keep] / m[keep]
    return out


class HeatmapStore:
    """Read and write the saved heatmaps of one run folder."""

    def __init__(self, run_path: Path, max_side: int = DEFAULT_MAX_SIDE) -> None:
        self.root = Path(run_path) / FOLDER
        self.max_side = max_side

    def path(self, model: str, sample_id: str) -> Path:
        return self.root / model / sample_file_name(sample_id)

    def save(self, model: str, sample_id: str, scored_heatmap: np.ndarray) -> Path:
        """Keep the map as scored (already normalised to [0, 1]) at display size, atomically."""
        scored_heatmap = np.asarray(scored_heatmap, dtype=np.float32)
        small = reduce(scored_heatmap, self.max_side)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, heatmap=small.astype(np.float16),
                            original_shape=np.asarray(scored_heatmap.shape, dtype=np.int64))
        path = self.path(model, sample_id)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def has(self, model: str, sample_id: str) -> bool:
        return self.path(model, sample_id).is_file()

    def load(self, model: str, sample_id: str) -> tuple[np.ndarray, tuple[int, int]]:
        """(float32 reduced heatmap with NaN kept, original (height, width)); FileNotFoundError if absent."""
        with np.load(self.path(model, sample_id)) as data:
            heatmap = data["heatmap"].astype(np.float32)
            shape = tuple(int(v) for v in data["original_shape"])
        return heatmap, (shape[0], shape[1])

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def sample_ids(self, model: str) -> list[str]:
        folder = self.root / model
        return sorted(sample_id_from_file(p.name) for p in folder.glob("*.npz")) if folder.is_dir() else []
