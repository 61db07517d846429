"""Bench outputs: summary.csv/json, a results table in the paper's layout (markdown and terminal), a chart.

Paper layout: one row per class plus "Average"; for each metric, one column per model showing
"mean [low, high]" (95 % percentile bootstrap CI).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cxrg.bench.bootstrap import AVERAGE
from cxrg.runs import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    format_number,
    json_safe,
    save_figure,
)

SUMMARY_FIELDS = ("model", "category", "metric", "mean", "ci_low", "ci_high", "n")
METRIC_TITLES = {"cnr": "CNR", "miou": "mIoU", "miou_no_box_0": "mIoU (no box = 0)"}


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or math.isnan(row["mean"]):
        return "-"
    return f"{row['mean']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


FEW = 10
"""Classes with fewer samples than this are marked: their confidence interval means little."""


def class_sizes(summary: dict[str, Any]) -> dict[str, int]:
    """Samples per class (summaries before 0.2: the largest n any model reached in it)."""
    if summary.get("class_sizes"):
        return {c: int(n) for c, n in summary["class_sizes"].items()}
    sizes: dict[str, int] = {}
    for r in summary["rows"]:
        if r["category"] != AVERAGE:
            sizes[r["category"]] = max(sizes.get(r["category"], 0), int(r["n"]))
    return sizes


def class_label(category: str, sizes: dict[str, int]) -> str:
    if category not in sizes:
        return category
    mark = " †" if sizes[category] < FEW else ""
    return f"{category} (n={sizes[category]}){mark}"


def _layout(summary: dict[str, Any]) -> tuple[list[str], list[str], list[str], dict]:
    rows = summary["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    metrics = [m for m in METRIC_TITLES if any(r["metric"] == m for r in rows)]
    categories = list(summary["categories"]) + [AVERAGE]
    index = {(r["model"], r["category"], r["metric"]): r for r in rows}
    return models, metrics, categories, index


def markdown_table(summary: dict[str, Any]) -> str:
    models, metrics, categories, index = _layout(summary)
    header = ["Class"] + [f"{METRIC_TITLES[m]} {model}" for m in metrics for model in models]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sizes = class_sizes(summary)
    for category in categories:
        cells = [f"**{category}**" if category == AVERAGE else class_label(category, sizes)]
        cells += [_cell(index.get((model, category, m))) for m in metrics for model in models]
        lines.append("| " + " | ".join(cells) + " |")
    if any(n < FEW for n in sizes.values()):
        lines.append("")
        lines.append(f"† fewer than {FEW} samples: the CI means little.")
    counts = summary["counts"]
    notes = [f"- {model}: {c['scored']} of {c['samples']} samples scored, {c['failed']} failed"
             + (f", {c['undefined']} undefined (a metric without a value)" if c.get("undefined") else "")
             + (f" ({c['no_prediction']} of them no prediction: "
                + ", ".join(f"{k} {v}" for k, v in c["no_prediction_by_class"].items()) + ")"
                if c.get("no_prediction") else "")
             + (f", CNR undefined for {c['cnr_undefined']}" if c.get("cnr_undefined") else "")
             for model, c in counts.items()]
    notes += [f"- {model}: not run: {error}" for model, error in summary.get("model_errors", {}).items()]
    for model in models:
        for m in metrics:
            empty = [c for c in summary["categories"]
                     if (model, c, m) in index and math.isnan(index[(model, c, m)]["mean"])]
            if empty:
                notes.append(f"- {model} {METRIC_TITLES[m]}: no value in {', '.join(empty)}; its Average is "
                             f"over the other {len(summary['categories']) - len(empty)} classes")
    level = int(round(summary["level"] * 100))
    return ("\n".join(lines) + f"\n\nMean with {level} % percentile bootstrap CI ({summary['resamples']} "
            f"resamples, seed {summary['seed']}); Average = mean of the per-class means.\n\n"
            + "\n".join(notes) + "\n")


def rich_table(summary: dict[str, Any]):
    """For the terminal: one table per metric (classes x models), each cell the mean over its CI, so that
    five models fit in 80 columns; n per class in the first column."""
    from rich.console import Group
    from rich.table import Table

    models, metrics, categories, index = _layout(summary)
    sizes = class_sizes(summary)
    tables: list[Any] = []
    for m in metrics:
        table = Table(title=f"{METRIC_TITLES[m]} (mean, 95 % CI)", title_justify="left")
        table.add_column("Class")
        for model in models:
            table.add_column(model, justify="right")
        for category in categories:
            cells = []
            for model in models:
                row = index.get((model, category, m))
                cells.append("-" if row is None or math.isnan(row["mean"]) else
                             f"{row['mean']:.3f}\n[{row['ci_low']:.2f}, {row['ci_high']:.2f}]")
            table.add_row(class_label(category, sizes), *cells,
                          style="bold" if category == AVERAGE else None)
        tables.append(table)
    if any(n < FEW for n in sizes.values()):
        tables.append(f"† fewer than {FEW} samples: the CI means little.")
    return Group(*tables)


def chart(summary: dict[str, Any], path: Path) -> None:
    """Per-class means with CI bars, one panel per metric, one bar colour per model (results.png)."""
    from cxrg.runs import headless_plots

    headless_plots()
    fig = chart_figure(summary)
    if fig is not None:
        save_figure(fig, path, dpi=120)


def chart_figure(summary: dict[str, Any]) -> Any:
    """The chart of `chart` as a matplotlib figure (None without metrics): for a notebook's `Run.plot`."""
    import matplotlib.pyplot as plt
    import numpy as np

    models, metrics, categories, index = _layout(summary)
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(categories))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for k, model in enumerate(models):
            stats = [index.get((model, c, metric)) for c in categories]
            means = np.array([s["mean"] if s else np.nan for s in stats])
            low = np.array([s["mean"] - s["ci_low"] if s else np.nan for s in stats])
            high = np.array([s["ci_high"] - s["mean"] if s else np.nan for s in stats])
            ax.bar(x + (k - (len(models) - 1) / 2) * width, means, width, label=model,
                   yerr=np.nan_to_num(np.vstack([low, high])), capsize=2)
        sizes = class_sizes(summary)
        ax.set_xticks(x, [class_label(c, sizes) for c in categories], rotation=40, ha="right", fontsize=8)
        ax.set_title(METRIC_TITLES[metric])
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_reports(summary: dict[str, Any], out: Path) -> None:
    rows = [{**r, **{k: format_number(r[k]) for k in ("mean", "ci_low", "ci_high")}} for r in summary["rows"]]
    atomic_write_csv(out / "summary.csv", SUMMARY_FIELDS, rows)
    atomic_write_json(out / "summary.json", json_safe(summary))
    atomic_write_text(out / "results.md", markdown_table(summary))
    chart(summary, out / "results.png")
