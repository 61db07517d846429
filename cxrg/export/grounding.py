"""`cxrg ground --format dicom-seg`: the default files for every image, then a SEG for each DICOM one.

The SEG of an image is made from the files `cxrg ground` has just written for it (the full-size .npy and
the .json), so it holds exactly the map and the prompt those hold; its path is added to the JSON's
`outputs`. A PNG or JPEG source keeps its heatmap files and gets one line, "DICOM SEG needs a DICOM
source"; with one image that is the command's error (exit 1), in a batch a skip that is counted.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import CxrgError, UsageError

GROUND_FORMATS = ("dicom-seg",)
"""Outputs `cxrg ground --format` adds to the heatmap, overlay and JSON it always writes."""


def ground_formats(values: Sequence[str] | None) -> tuple[str, ...]:
    """`--format` values (repeated or comma-separated) -> the extra formats; unknown ones are refused."""
    chosen = [v.strip().lower() for value in values or () for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in GROUND_FORMATS]
    if unknown:
        raise UsageError(f"unknown --format {', '.join(unknown)}",
                         hint=f"choose {', '.join(GROUND_FORMATS)} (the heatmap, overlay and JSON are always "
                              "written)")
    return tuple(dict.fromkeys(chosen))


def model_fingerprint(name: str, model: Any, options: dict[str, Any] | None, weights: Any) -> str:
    """The model's identity as `cxrg bench` records it (cxrg.bench.runner.model_fingerprints)."""
    from cxrg.bench.runner import model_fingerprints
    from cxrg.grounding import model_settings

    settings = model_settings(model)
    ldm_settings = {name: settings} if settings is not None else {}
    return model_fingerprints({name: model}, {name: options or {}}, ldm_settings, weights)[name]


def seg_for_summary(summary_path: Path, weights_fingerprint: str = "") -> Path:
    """The SEG of one `cxrg ground` output (its .json and .npy), written beside them; the JSON then lists
    it under outputs['seg.dcm']."""
    from cxrg.export.dicom_seg import SEG_SUFFIX, write_dicom_seg
    from cxrg.runs import atomic_write_json

    summary = json.loads(Path(summary_path).read_text(encoding="utf-8"))
    name = Path(summary_path).name.removesuffix(".json")
    heatmap = np.load(Path(summary_path).parent / f"{name}.heatmap.npy")
    otsu = bool((summary.get("model_settings") or {}).get("otsu", False))
    path = write_dicom_seg(summary["image"], heatmap, None, phrase=summary.get("phrase", summary["prompt"]),
                           prompt=summary["prompt"], model=summary["model"],
                           model_version=str(summary.get("model_version", "")),
                           weights_fingerprint=weights_fingerprint,
                           out=Path(summary_path).parent / f"{name}{SEG_SUFFIX}", otsu=otsu)
    summary["outputs"]["seg.dcm"] = str(path)
    atomic_write_json(Path(summary_path), summary)
    return path


def ground_with_formats(model: Any, spec: str, phrase: str, out: Path, exact: bool,
                        formats: Sequence[str], weights_fingerprint: str = "", batch_size: int = 1) -> None:
    """cxrg.grounding.ground_images, then the extra `formats` for the images it grounded (module
    docstring). Exit status 1 when an image failed or a SEG was refused."""
    from cxrg.grounding import collect_images, ground_images

    started = time.time() - 1.0  # file times may be rounded down to the second
    failed: SystemExit | None = None
    try:
        ground_images(model, spec, phrase, out, exact, batch_size)
    except SystemExit as exc:  # some images of a batch failed (already reported): SEG for the others
        failed = exc
    if "dicom-seg" in formats:
        paths = collect_images(spec)
        written, refused = 0, 0
        for path in paths:
            summary = Path(out) / f"{path.name.split('.')[0]}.{model.card.name}.json"
            if not summary.is_file() or summary.stat().st_mtime < started:
                continue  # not grounded by this command: its failure is already reported
            try:
                seg = seg_for_summary(summary, weights_fingerprint)
            except CxrgError as exc:
                if len(paths) == 1:
                    raise
                refused += 1
                print(f"cxrg: {path}: {exc.what}; its heatmap files are written", file=sys.stderr, flush=True)
                continue
            written += 1
            print(f"{path}: DICOM SEG -> {seg}", flush=True)
        if len(paths) > 1:
            print(f"{written} DICOM SEG written, {refused} refused", file=sys.stderr, flush=True)
        if refused and failed is None:
            failed = SystemExit(1)
    if failed is not None:
        raise failed
