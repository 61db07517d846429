"""Which captured layers and which timesteps ground? CNR and mIoU per layer and per timestep window.

On a bench-format dataset (any `cxrg bench` reader), each image is DDIM-inverted once over all inference
steps and the prompt's cross-attention is captured in every cross-attention layer at every step
(`LdmEngine.captured_maps`). A cell of the table is the heatmap made from one layer and one window of
timesteps only, post-processed exactly as the pipeline does (`postprocess`: per-map min-max, upsample,
mean, smoothing, Otsu if the settings say so), mapped back to the image and scored against the boxes.
Rows: every cross-attention layer, then "default layers" (the settings' layers together); columns: windows
of `window` consecutive inference steps labelled by their t range, then "default steps" (the settings'
own captured steps), then the same steps on the other DDIM grid ("leading" t = 690..400 or "trailing"
t = 699..409 for indices 30..59 counted noise -> image: the protocol choice timestep_spacing), labelled
"default steps, <spacing> t=a..b". The cell ("default layers", "default steps") is the pipeline's heatmap
itself.
Use it to check a layer/step choice on *validation* data, never on the test set you report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from cxrg.bench.datasets import Dataset
from cxrg.bench.metrics import normalise, score
from cxrg.images import read_annotated_image
from cxrg.ldm.attention import cross_attention_layers
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine, postprocess
from cxrg.ldm.loading import LoadedLdm
from cxrg.ldm.text import Codebook

DEFAULT_ROW = "default layers"
DEFAULT_COLUMN = "default steps"


def captured_times(engine: LdmEngine) -> list[int]:
    """The timestep t of each captured slot of `engine.captured_maps`, in slot order."""
    steps = getattr(engine.settings, "inversion_steps", engine.settings.capture_steps)
    return [int(engine.timesteps[i]) for i in steps]


@dataclass
class Diagnosis:
    layers: list[str]
    columns: list[str]
    cnr: np.ndarray  # (rows, columns) mean over samples
    miou: np.ndarray
    samples: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    default_times: list[int] = field(default_factory=list)

    @property
    def rows(self) -> list[str]:
        return [*self.layers, DEFAULT_ROW]

    def best(self, metric: str = "cnr") -> tuple[str, str, float]:
        values = self.cnr if metric == "cnr" else self.miou
        r, c = np.unravel_index(int(np.nanargmax(values)), values.shape)
        return self.rows[r], self.columns[c], float(values[r, c])

    def table_rows(self) -> list[dict[str, str]]:
        out = []
        for r, row in enumerate(self.rows):
            for c, column in enumerate(self.columns):
                out.append({"layer": row, "window": column, "cnr": f"{self.cnr[r, c]:.4f}",
                            "miou": f"{self.miou[r, c]:.4f}"})
        return out

    def to_dict(self) -> dict:
        return {"layers": self.layers, "columns": self.columns, "cnr": self.cnr.tolist(),
                "miou": self.miou.tolist(), "samples": self.samples, "skipped": self.skipped,
                "default_times": self.default_times}


def windows_of(times: Sequence[int], window: int) -> list[tuple[str, list[int]]]:
    """Consecutive groups of `window` inference steps: (label 't=a..b', slot indices)."""
    order = sorted(range(len(times)), key=lambda s: times[s])
    out = []
    for start in range(0, len(order), window):
        slots = order[start:start + window]
        low, high = times[slots[0]], times[slots[-1]]
        out.append((f"t={low}..{high}", slots))
    return out


def diagnose(ldm: LoadedLdm, dataset: Dataset, settings: HeatmapSettings | None = None,
             codebook: Codebook | None = None, layers: Sequence[str] | None = None, window: int = 10,
             limit: int | None = None, progress: Callable[[int, int], None] | None = None) -> Diagnosis:
    """CNR and mIoU per (layer, window) and for the settings' defaults; see the module docstring."""
    base = settings or HeatmapSettings()
    layers = list(layers or cross_attention_layers(ldm.unet))
    default_engine = LdmEngine(ldm, base, codebook)
    default_times = captured_times(default_engine)
    everything = base.with_changes(capture_steps=tuple(range(base.inference_steps)))
    times = captured_times(LdmEngine(ldm, everything, codebook))
    columns = windows_of(times, window)
    default_slots = [times.index(t) for t in default_times]
    captured = list(dict.fromkeys([*layers, *base.layers]))  # one pass captures every layer we need
    full = LdmEngine(ldm, everything.with_changes(layers=tuple(captured)), codebook)
    width = len(captured)
    row_layers = [[captured.index(name)] for name in layers] + [[captured.index(n) for n in base.layers]]
    other = "trailing" if base.timestep_spacing == "leading" else "leading"
    alt = LdmEngine(ldm, base.with_changes(timestep_spacing=other, layers=tuple(captured)), codebook)
    alt_times = captured_times(alt)
    alt_label = f"{DEFAULT_COLUMN}, {other} t={max(alt_times)}..{min(alt_times)}"
    labels = [label for label, _ in columns] + [DEFAULT_COLUMN, alt_label]
    slot_sets = [slots for _, slots in columns] + [default_slots]
    rows = len(layers) + 1
    sums = np.zeros((2, rows, len(labels)))
    counts = np.zeros((2, rows, len(labels)))
    samples = [s for s in dataset.samples if not s.error]
    skipped = [(s.sample_id, s.error) for s in dataset.samples if s.error]
    if limit is not None:
        samples = samples[:limit]
    scored = 0
    for k, sample in enumerate(samples):
        try:
            image = read_annotated_image(sample.image_path, sample.image_size)  # type: ignore[arg-type]
        except Exception as exc:  # one bad item is recorded and skipped
            skipped.append((sample.sample_id, str(exc)))
            continue
        height, width_px = image.shape[:2]
        with torch.inference_mode():
            pixels = full.model_input(image)
            trajectory = full.trajectory(pixels)
            context, spans = full.contexts([sample.prompt])
            maps = full.captured_maps(trajectory, context, spans)[0]  # (steps * layers, h, w)
            alt_maps = alt.captured_maps(alt.trajectory(pixels), context, spans)[0]
        for r, members in enumerate(row_layers):
            for c, slots in enumerate([*slot_sets, None]):
                if slots is None:  # the other grid's default steps
                    picked = alt_maps[[s * width + m for s in range(len(alt_times)) for m in members]]
                else:
                    picked = maps[[s * width + m for s in slots for m in members]]
                heat = postprocess(picked, full.size, base)
                heat = normalise(full.transform.heatmap_to_image(heat, height, width_px))
                values = score(heat, sample.boxes)
                for m in range(2):
                    if math.isfinite(values[m]):
                        sums[m, r, c] += values[m]
                        counts[m, r, c] += 1
        scored += 1
        if progress:
            progress(k + 1, len(samples))
    with np.errstate(invalid="ignore"):
        means = sums / counts
    return Diagnosis(layers, labels, means[0], means[1], scored, skipped, default_times)


def plot(diagnosis: Diagnosis, path, title: str = "") -> None:
    """Two heatmaps (CNR, mIoU) of layers x windows, written with cxrg.runs.save_figure."""
    from cxrg.runs import headless_plots

    headless_plots()
    import matplotlib.pyplot as plt

    from cxrg.runs import save_figure

    short = [_short(name) for name in diagnosis.rows]
    fig, axes = plt.subplots(1, 2, figsize=(4 + 0.75 * len(diagnosis.columns) * 2, 1.2 + 0.4 * len(short)))
    for ax, values, name in zip(axes, (diagnosis.cnr, diagnosis.miou), ("CNR", "mIoU"), strict=True):
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(diagnosis.columns)), diagnosis.columns, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(short)), short, fontsize=7)
        for r in range(values.shape[0]):
            for c in range(values.shape[1]):
                if np.isfinite(values[r, c]):
                    ax.text(c, r, f"{values[r, c]:.2f}", ha="center", va="center", fontsize=6, color="w")
        ax.set_title(f"{name} (n={diagnosis.samples})", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.03)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=130)


def _short(layer: str) -> str:
    return (layer.replace(".transformer_blocks.0.attn2", "").replace("attentions.", "a")
            .replace("_block", "").replace(".attention", ""))
