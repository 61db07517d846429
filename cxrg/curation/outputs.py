"""What a curation run writes: the manifest (CSV and JSONL), the skip log, a summary and the figure.

manifest.csv / manifest.jsonl
    one row per sample: sample_id, image_id, image_path, pathology, locations, prompt, sentence,
    sentence_index, report_id, extractor. In the CSV, locations are joined with ";" and sentences with
    " | "; the JSONL keeps them as lists. This is what `cxrg tune` reads.
skips.csv
    one row per report, label or sentence left out: level, report_id, pathology, sentence_index, reason,
    detail (the sentence, the file, the labels...).
summary.json / summary.md
    counts per level that add up (total = kept + each reason), samples per pathology and per location,
    example prompts.
locations.csv / locations.png
    samples per location (rows, in `cxrg.vocab.LOCATIONS` order) and pathology (columns): the paper's
    Figure 7. A sample with two locations counts once for each.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from cxrg.curation.pipeline import CurationResult, Sample
from cxrg.runs import atomic_write_csv, atomic_write_json, atomic_write_text
from cxrg.vocab import LOCATIONS, PATHOLOGIES

MANIFEST_FIELDS = ("sample_id", "image_id", "image_path", "pathology", "locations", "prompt", "sentence",
                   "sentence_index", "report_id", "extractor")
SKIP_FIELDS = ("level", "report_id", "pathology", "sentence_index", "reason", "detail")


def manifest_row(sample: Sample) -> dict[str, Any]:
    return {"sample_id": sample.sample_id, "image_id": sample.image_id, "image_path": sample.image_path,
            "pathology": sample.pathology, "locations": ";".join(sample.locations), "prompt": sample.prompt,
            "sentence": " | ".join(sample.sentences),
            "sentence_index": ";".join(str(i) for i in sample.sentence_indices),
            "report_id": sample.report_id, "extractor": sample.extractor}


def write_manifest(samples: list[Sample], out: Path) -> None:
    atomic_write_csv(out / "manifest.csv", MANIFEST_FIELDS, (manifest_row(s) for s in samples))
    lines = []
    for s in samples:
        lines.append(json.dumps({
            "sample_id": s.sample_id, "image_id": s.image_id, "image_path": s.image_path,
            "pathology": s.pathology, "locations": list(s.locations), "prompt": s.prompt,
            "sentences": s.sentences, "sentence_indices": s.sentence_indices, "report_id": s.report_id,
            "extractor": s.extractor}, ensure_ascii=False))
    atomic_write_text(out / "manifest.jsonl", "".join(line + "\n" for line in lines))


def write_skips(result: CurationResult, out: Path) -> None:
    rows = ({"level": s.level, "report_id": s.report_id, "pathology": s.pathology,
             "sentence_index": "" if s.sentence_index is None else s.sentence_index, "reason": s.reason,
             "detail": s.detail} for s in result.skips)
    atomic_write_csv(out / "skips.csv", SKIP_FIELDS, rows)


def location_counts(samples: list[Sample]) -> dict[str, Counter[str]]:
    """location -> pathology -> number of samples, every location and pathology present (zeros kept)."""
    table: dict[str, Counter[str]] = {loc: Counter({p: 0 for p in PATHOLOGIES}) for loc in LOCATIONS}
    for sample in samples:
        for loc in sample.locations:
            table[loc][sample.pathology] += 1
    return table


def summary(result: CurationResult, source: dict[str, Any] | None = None,
            examples: int = 3) -> dict[str, Any]:
    per_pathology = Counter(s.pathology for s in result.samples)
    table = location_counts(result.samples)
    used = [loc for loc in LOCATIONS if sum(table[loc].values())]
    shown: dict[str, list[dict[str, str]]] = {}
    for sample in result.samples:
        bucket = shown.setdefault(sample.pathology, [])
        if len(bucket) < examples:
            bucket.append({"prompt": sample.prompt, "sentence": " | ".join(sample.sentences),
                           "report_id": sample.report_id})
    return {
        "source": source or {},
        "extractor": result.extractor,
        "label_rule": result.label_rule,
        "unit": result.unit,
        "samples": len(result.samples),
        "samples_without_image": sum(1 for s in result.samples if not s.image_path),
        "pathologies": sum(1 for p in PATHOLOGIES if per_pathology[p]),
        "locations": len(used),
        "samples_per_pathology": {p: per_pathology[p] for p in PATHOLOGIES},
        "samples_per_location": {loc: sum(table[loc].values()) for loc in LOCATIONS},
        "reports": result.reports.as_dict(),
        "labels": result.labels.as_dict(),
        "sentences": result.sentences.as_dict(),
        "counts_add_up": result.adds_up(),
        "examples": shown,
    }


def markdown(info: dict[str, Any]) -> str:
    lines = ["# Curation summary", ""]
    src = ", ".join(f"{k}: {v}" for k, v in info["source"].items())
    lines += [f"Source: {src}" if src else "Source: -",
              f"Extractor: {info['extractor']}; label rule: {info['label_rule']}; unit: {info['unit']}", "",
              f"**{info['samples']} samples, {info['locations']} locations, "
              f"{info['pathologies']} pathologies.**"
              + (f" {info['samples_without_image']} samples have no image_path (no frontal image found; "
                 "`cxrg tune` skips them)." if info.get("samples_without_image") else ""),
              "", "| level | total | kept | skipped |", "|---|---:|---:|---:|"]
    for level in ("reports", "labels", "sentences"):
        tally = info[level]
        lines.append(f"| {level} | {tally['total']} | {tally['kept']} | {sum(tally['skipped'].values())} |")
    for level in ("reports", "labels", "sentences"):
        skipped = info[level]["skipped"]
        if skipped:
            lines += ["", f"Skipped {level}:", "", "| reason | count |", "|---|---:|"]
            lines += [f"| {reason} | {count} |" for reason, count in skipped.items()]
    lines += ["", "| pathology | samples |", "|---|---:|"]
    lines += [f"| {p} | {n} |" for p, n in info["samples_per_pathology"].items()]
    lines += ["", "| location | samples |", "|---|---:|"]
    lines += [f"| {loc} | {n} |" for loc, n in info["samples_per_location"].items() if n]
    if info["examples"]:
        lines += ["", "Examples:", ""]
        for items in info["examples"].values():
            for item in items:
                lines.append(f"- `{item['prompt']}` <- \"{item['sentence']}\" ({item['report_id']})")
    return "\n".join(lines) + "\n"


def write_location_table(samples: list[Sample], out: Path) -> None:
    table = location_counts(samples)
    rows = [{"location": loc, **{p: table[loc][p] for p in PATHOLOGIES},
             "total": sum(table[loc].values())} for loc in LOCATIONS]
    atomic_write_csv(out / "locations.csv", ("location", *PATHOLOGIES, "total"), rows)


def draw_location_figure(samples: list[Sample], path: Path, title: str = "") -> None:
    """Samples per location (rows) and pathology (columns), counts written in the cells."""

    from cxrg.runs import headless_plots

    headless_plots()
    import matplotlib.pyplot as plt
    import numpy as np

    table = location_counts(samples)
    counts = np.array([[table[loc][p] for p in PATHOLOGIES] for loc in LOCATIONS], dtype=float)
    fig, ax = plt.subplots(figsize=(8.5, 11))
    shown = np.log10(counts + 1)
    image = ax.imshow(shown, cmap="Blues", aspect="auto", vmin=0, vmax=max(1.0, float(shown.max())))
    per_pathology = Counter(sample.pathology for sample in samples)
    ax.set_xticks(range(len(PATHOLOGIES)), [f"{p} ({per_pathology[p]})" for p in PATHOLOGIES], fontsize=9,
                  rotation=35, ha="left", rotation_mode="anchor")
    totals = counts.sum(axis=1)
    labels = [f"{loc} ({int(t)})" for loc, t in zip(LOCATIONS, totals, strict=True)]
    ax.set_yticks(range(len(LOCATIONS)), labels, fontsize=9)
    ax.xaxis.tick_top()
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                dark = shown[i, j] > 0.6 * max(1.0, float(shown.max()))
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    ax.set_xlabel("(n): samples; a sample with several locations counts in each of its rows", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, label="log10(samples + 1)")
    ax.set_title(title or f"Samples per location and pathology ({len(samples)} samples)", fontsize=11, pad=20)
    fig.tight_layout()
    from cxrg.runs import save_figure

    save_figure(fig, path, dpi=110)


def write_all(result: CurationResult, out: Path, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every output of a curation run into `out`; returns the summary."""
    out = Path(out)
    write_manifest(result.samples, out)
    write_skips(result, out)
    info = summary(result, source)
    atomic_write_json(out / "summary.json", info)
    atomic_write_text(out / "summary.md", markdown(info))
    write_location_table(result.samples, out)
    draw_location_figure(result.samples, out / "locations.png")
    return info
