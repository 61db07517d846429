"""Statistics from scores.csv and the classify outputs: summary.json, auroc.csv, bins.csv, results.md and
results.png (AUROC per strategy, the paper's Table 6; AUROC in the low and high mIoU bins, Figure 6)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.classify.data import Job
from cxrg.classify.runner import EMPTY_HEATMAP, keys, run_keys, value
from cxrg.classify.stats import Pools, auroc_summary, bin_summary
from cxrg.runs import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    format_number,
    json_safe,
    save_figure,
)

AUROC_FIELDS = ("strategy", "value", "ci_low", "ci_high", "positives", "negatives", "positive_runs",
                "negative_runs", "diff_vs", "diff", "diff_low", "diff_high", "diff_p")
BIN_FIELDS = ("binned_by", "scored_by", "per_bin", "left_out", "negatives", "miou_low_max", "miou_high_min",
              "low", "low_low", "low_high", "high", "high_low", "high_high", "diff", "diff_low", "diff_high",
              "p")


def pools(rows: dict, jobs: Sequence[Job], strategies: Sequence[str]) -> Pools:
    """The scored runs of the cohort (an image that failed is out of every strategy alike)."""
    labels, units, numbering = [], [], {0: {}, 1: {}}  # type: ignore[var-annotated]
    scores: dict[str, list[float]] = {s: [] for s in strategies}
    miou: dict[str, list[float]] = {s: [] for s in strategies}
    for job in jobs:
        for run in job.runs:
            run_rows = [rows.get(k) for k in run_keys(job.kind, run, strategies)]
            if any(r is None or r.get("error") for r in run_rows):
                continue
            labels.append(run.label)
            units.append(numbering[run.label].setdefault(run.unit, len(numbering[run.label])))
            for s, r in zip(strategies, run_rows, strict=True):
                scores[s].append(value(r, "score"))
                miou[s].append(value(r, "miou"))
    return Pools(np.array(labels, dtype=np.int64), np.array(units, dtype=np.int64),
                 {s: np.array(v) for s, v in scores.items()}, {s: np.array(v) for s, v in miou.items()})


def summarise(rows: dict, jobs: Sequence[Job], strategies: Sequence[str], resamples: int, seed: int,
              notes: Sequence[str] = ()) -> dict[str, Any]:
    scored = pools(rows, jobs, strategies)
    auroc = auroc_summary(scored, resamples, seed)
    with_maps = [s for s in strategies if s != "none"]
    bins = []
    if scored.n_positive >= 2:
        for s in with_maps:
            bins += bin_summary(scored, s, [s] + (["none"] if "none" in strategies else []), resamples, seed)
    counts: dict[str, dict[str, int]] = {}
    for kind in ("positive", "negative"):
        members = [job for job in jobs if job.kind == kind]
        runs = [(job, run) for job in members for run in job.runs]
        failed_runs = sum(1 for job, run in runs if _failed(rows, run_keys(kind, run, strategies)))
        failed_images = sum(1 for job in members if _failed(rows, keys(job, strategies)))
        counts[kind] = {"images": len(members), "images_failed": failed_images, "runs": len(runs),
                        "runs_scored": len(runs) - failed_runs, "runs_failed": failed_runs,
                        "units_scored": scored.n_positive if kind == "positive" else scored.n_negative}
    empty = {s: sum(1 for k, r in rows.items() if k[3] == s and r.get("note") == EMPTY_HEATMAP)
             for s in with_maps}
    return {"auroc": auroc, "bins": bins, "counts": counts, "empty_heatmaps": empty,
            "strategies": list(strategies), "resamples": resamples, "seed": seed, "level": 0.95,
            "notes": list(notes), "small_sample": small_sample(scored.n_positive, scored.n_negative)}


SMALL_SAMPLE = 10
"""Fewer positive or negative samples than this: the bootstrap CIs and p-values are flagged as meaningless
(the bench marks classes under the same count, cxrg.bench.reports.FEW)."""


def small_sample(positives: int, negatives: int) -> str | None:
    """The warning for a cohort too small for its statistics, or None."""
    if min(positives, negatives) >= SMALL_SAMPLE:
        return None
    return (f"only {positives} positive and {negatives} negative samples: with fewer than {SMALL_SAMPLE} of "
            "either, the bootstrap CIs and p-values mean little (a CI of [1, 1] or p = 1.0 says the few "
            "resampled runs all agreed, not that the result is certain); classify more images")


def _failed(rows: dict, wanted: Sequence[tuple]) -> bool:
    return any(rows.get(k) is None or rows[k].get("error") for k in wanted)


def _cell(value: float, low: float, high: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _p(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def markdown(summary: dict[str, Any]) -> str:
    warning = summary.get("small_sample")
    lines = ([f"**Warning: {warning}.**", ""] if warning else []) + ["## AUROC per heatmap strategy", "",
             "| strategy | AUROC [95 % CI] | difference from none [95 % CI] | p |", "|---|---|---|---|"]
    for r in summary["auroc"]:
        diff = _cell(r["diff"], r["diff_low"], r["diff_high"]) if "diff" in r else "-"
        lines.append(f"| {r['strategy']} | {_cell(r['value'], r['ci_low'], r['ci_high'])} | {diff} | "
                     f"{_p(r.get('diff_p'))} |")
    first = summary["auroc"][0] if summary["auroc"] else {}
    lines += ["", f"{first.get('positives', 0)} positive samples, {first.get('negatives', 0)} negative "
              f"images ({first.get('negative_runs', 0)} negative runs: one per location prompt). Percentile "
              f"bootstrap, {summary['resamples']} resamples stratified by class and paired across "
              f"strategies, seed {summary['seed']}."]
    if summary["bins"]:
        lines += ["", "## AUROC in the low and high mIoU bins", "",
                  "| bins by | scored by | per bin | low-mIoU AUROC [95 % CI] | high-mIoU AUROC [95 % CI] | "
                  "high - low [95 % CI] | p |", "|---|---|---|---|---|---|---|"]
        for r in summary["bins"]:
            lines.append(f"| {r['binned_by']} | {r['scored_by']} | {r['per_bin']} | "
                         f"{_cell(r['low'], r['low_low'], r['low_high'])} | "
                         f"{_cell(r['high'], r['high_low'], r['high_high'])} | "
                         f"{_cell(r['diff'], r['diff_low'], r['diff_high'])} | {_p(r['p'])} |")
        lines += ["", "Positives split at the median mIoU of the binning strategy's heatmap (equal halves; "
                  "the middle one left out when odd); every bin is scored against all negatives. Rows scored "
                  "by `none` show the plain classifier on the same bins."]
    lines += [""] + [f"- {kind}s: {c['images']} images, {c['runs_scored']} of {c['runs']} runs scored, "
                     f"{c['runs_failed']} failed" + (" (reasons in scores.csv and log.txt)"
                                                     if c["runs_failed"] else "")
                     for kind, c in summary["counts"].items()]
    lines += [f"- {s}: {n} empty heatmap(s), uniform weights used"
              for s, n in summary["empty_heatmaps"].items() if n]
    lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


def figure(summary: dict[str, Any], path: Path) -> None:
    """Left: AUROC per strategy with CI; right: low- and high-mIoU bin AUROC per strategy (own scores)."""
    from cxrg.runs import headless_plots

    headless_plots()
    import matplotlib.pyplot as plt

    own = [r for r in summary["bins"] if r["binned_by"] == r["scored_by"]]
    fig, axes = plt.subplots(1, 2 if own else 1, figsize=(11 if own else 5.5, 4), squeeze=False)
    ax = axes[0][0]
    names = [r["strategy"] for r in summary["auroc"]]
    x = np.arange(len(names))
    values = np.array([r["value"] for r in summary["auroc"]], dtype=float)
    errors = np.nan_to_num(np.array([[r["value"] - r["ci_low"] for r in summary["auroc"]],
                                     [r["ci_high"] - r["value"] for r in summary["auroc"]]], dtype=float))
    ax.bar(x, values, 0.6, yerr=errors, capsize=3, color="#4c72b0")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_title("AUROC (95 % CI)")
    if own:
        ax = axes[0][1]
        x = np.arange(len(own))
        for k, (b, colour) in enumerate((("low", "#dd8452"), ("high", "#55a868"))):
            v = np.array([r[b] for r in own], dtype=float)
            e = np.nan_to_num(np.array([[r[b] - r[f"{b}_low"] for r in own],
                                        [r[f"{b}_high"] - r[b] for r in own]], dtype=float))
            ax.bar(x + (k - 0.5) * 0.38, v, 0.38, yerr=e, capsize=3, color=colour, label=f"{b} mIoU")
        ax.set_xticks(x, [f"{r['binned_by']}\np={_p(r['p'])}" for r in own])
        ax.set_ylim(0, 1)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title("AUROC by mIoU bin")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def write_reports(summary: dict[str, Any], out: Path) -> None:
    atomic_write_json(out / "summary.json", json_safe(summary))
    atomic_write_csv(out / "auroc.csv", AUROC_FIELDS, [_csv_row(r) for r in summary["auroc"]])
    atomic_write_csv(out / "bins.csv", BIN_FIELDS, [_csv_row(r) for r in summary["bins"]])
    atomic_write_text(out / "results.md", markdown(summary))
    figure(summary, out / "results.png")


def _csv_row(row: dict[str, Any]) -> dict[str, str]:
    return {k: format_number(v) if isinstance(v, float) else str(v) for k, v in row.items()}
