"""Phrase-grounding datasets: MS-CXR and a generic CSV, read into one Sample type.

A sample is one (image, phrase) pair with all of its boxes. Rows that cannot become a usable sample (a
missing column value, a number that is not a number, a path that escapes the images root) are kept as
samples carrying an `error`, so that the harness reports them instead of dropping them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cxrg.bench.samples import ROW_ERROR, Dataset, Sample, read_csv_rows
from cxrg.errors import InputError, UsageError
from cxrg.images import resolve_image

__all__ = ["DATASETS", "GENERIC_COLUMNS", "MS_CXR_COLUMNS", "ROW_ERROR", "Dataset", "Sample", "read_csv_rows",
           "read_dataset", "read_generic", "read_ms_cxr", "resolve_image"]

MS_CXR_COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                  "image_width", "image_height")
GENERIC_COLUMNS = ("image", "prompt", "x", "y", "w", "h")


def _number(row: dict[str, str], key: str) -> float:
    text = row.get(key, "")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{key}={text!r} is not finite")
    return value


def _box(row: dict[str, str]) -> list[float]:
    x, y, w, h = (_number(row, key) for key in ("x", "y", "w", "h"))
    if w <= 0 or h <= 0:
        raise ValueError(f"box has no area (w={w:g}, h={h:g})")
    return [x, y, x + w, y + h]


def _size(row: dict[str, str]) -> tuple[int, int] | None:
    if not row.get("image_width") or not row.get("image_height"):
        return None
    return int(_number(row, "image_height")), int(_number(row, "image_width"))


def _group(rows: Iterable[tuple[int, dict[str, str]]], key_of) -> dict[tuple, list[tuple[int, dict]]]:
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for line, row in rows:
        groups.setdefault(key_of(row), []).append((line, row))
    return groups


def _make_sample(sample_id: str, members: list[tuple[int, dict]], images: Path, path_key: str,
                 category: str, prompt: str) -> Sample:
    lines = tuple(line for line, _ in members)
    sample = Sample(sample_id=sample_id, image_path=None, category=category, prompt=prompt, rows=lines)
    first = members[0][1]
    try:
        broken = [f"row {line}: {row[ROW_ERROR]}" for line, row in members if row.get(ROW_ERROR)]
        if broken:
            raise ValueError("; ".join(broken))
        if not prompt:
            raise ValueError("the phrase is empty")
        if not first.get(path_key):
            raise ValueError(f"{path_key} is empty")
        sample.image_path = resolve_image(images, first[path_key])
        sample.boxes = np.array([_box(row) for _, row in members], dtype=np.float64)
        sample.image_size = _size(first)
        if sample.image_size is not None:
            _check_boxes_inside(sample.boxes, sample.image_size)
    except ValueError as exc:
        where = f"row {lines[0]}" if len(lines) == 1 else f"rows {', '.join(map(str, lines))}"
        sample.error = f"{where}: {exc}"
    return sample


def _check_boxes_inside(boxes: np.ndarray, size: tuple[int, int]) -> None:
    height, width = size
    inside = (boxes[:, 2] > 0) & (boxes[:, 3] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
    if not inside.any():
        raise ValueError(f"no box overlaps the {width}x{height} image")


LOC_PAIRS = ("phrase", "merged")


def read_ms_cxr(annotations: Path, images: Path, split: str | None = None,
                prompt_text: str = "standardised", pairs: str = "merged") -> Dataset:
    """MS-CXR (`MS_CXR_Local_Alignment_v1.*.csv`): rows with the same image and label_text are one sample.

    An MS-CXR-loc file's phrases that became one prompt on one image: `pairs="phrase"` keeps one sample
    per original phrase (the paper's 1,043 image-text pairs), `"merged"` makes them one sample with all
    their boxes (cxrg). On plain MS-CXR (no original_label_text) the two are the same.

    `path` is resolved under `images` (MIMIC-CXR-JPG layout, e.g. files/p10/p10.../s5.../<dicom_id>.jpg).
    The sample id is `<dicom_id>:<k>`, k counting that image's phrases in file order. An MS-CXR-loc file
    (label_text rewritten to a prompt, original_label_text kept) is read the same way; with
    `prompt_text="original"` its samples are prompted with the original phrase (paper, Appendix H.1).
    """
    if prompt_text not in ("standardised", "original"):
        raise UsageError(f"unknown prompt text {prompt_text!r}", hint="choose standardised or original")
    if pairs not in LOC_PAIRS:
        raise UsageError(f"unknown loc_pairs {pairs!r}", hint=f"choose {' or '.join(LOC_PAIRS)}")
    rows = read_csv_rows(annotations, MS_CXR_COLUMNS)
    numbered = list(enumerate(rows, start=2))  # line 1 is the header
    if split is not None:
        if not rows or "split" not in rows[0]:
            raise InputError("--split was given but the annotations have no split column (MS-CXR v1.1 has)",
                             where=str(annotations))
        numbered = [(line, row) for line, row in numbered if row.get("split") == split]
    original = "original_label_text"
    if prompt_text == "original" and (not rows or original not in rows[0]):
        raise UsageError("--prompt-text original needs an MS-CXR-loc file (with original_label_text)",
                         where=str(annotations), hint="use it with --dataset ms-cxr-loc")
    # Boxes pool only within one image file: rows with the same dicom_id and phrase but another path are
    # separate samples (and said so); an MS-CXR-loc file's phrases that became one prompt on one image are
    # one sample with all their boxes (counted).
    per_phrase = prompt_text == "original" or pairs == "phrase"  # each original phrase on its own
    text_key = original if per_phrase else "label_text"
    groups = _group(numbered, lambda row: (row["dicom_id"], row.get(text_key) or row["label_text"],
                                           row["path"]))
    phrase_counter: dict[str, int] = {}
    paths_per_phrase: dict[tuple[str, str], int] = {}
    samples, notes = [], []
    merged_phrases = merged_samples = 0
    for (dicom_id, label_text, _path), members in groups.items():
        k = phrase_counter.get(dicom_id, 0)
        phrase_counter[dicom_id] = k + 1
        paths_per_phrase[(dicom_id, label_text)] = paths_per_phrase.get((dicom_id, label_text), 0) + 1
        category = members[0][1]["category_name"] or "unknown"
        phrases = list(dict.fromkeys(row.get(original) or label_text for _, row in members))
        if len(phrases) > 1:
            merged_phrases += len(phrases)
            merged_samples += 1
        phrase = " | ".join(phrases)
        prompt = phrases[0] if prompt_text == "original" else members[0][1]["label_text"]
        sample = _make_sample(f"{dicom_id}:{k}", members, images, "path", category, prompt)
        sample.phrase = phrase
        samples.append(sample)
    split_paths = {key: n for key, n in paths_per_phrase.items() if n > 1}
    if split_paths:
        notes.append(f"{len(split_paths)} (dicom_id, phrase) pair(s) appear with more than one image path; "
                     f"each path is its own sample, boxes are never pooled across files (e.g. "
                     f"{next(iter(split_paths))[0]})")
    if merged_phrases:
        notes.append(f"{merged_phrases} phrases share an image and a prompt with another one: merged into "
                     f"{merged_samples} samples with all their boxes (phrases joined with ' | ')")
    return Dataset("ms-cxr", Path(annotations), samples, notes)


def read_generic(annotations: Path, images: Path) -> Dataset:
    """The generic CSV: image, prompt, x, y, w, h [, category, image_id, image_width, image_height].

    One row per box; rows with the same image and prompt are one sample. `category` defaults to "all";
    the sample id is `<image_id or image file stem>:<k>`.
    """
    rows = read_csv_rows(annotations, GENERIC_COLUMNS)
    groups = _group(enumerate(rows, start=2), lambda row: (row["image"], row["prompt"]))
    phrase_counter: dict[str, int] = {}
    samples = []
    for (image, prompt), members in groups.items():
        image_id = members[0][1].get("image_id") or Path(image).stem
        k = phrase_counter.get(image_id, 0)
        phrase_counter[image_id] = k + 1
        category = members[0][1].get("category") or "all"
        sample = _make_sample(f"{image_id}:{k}", members, images, "image", category, prompt)
        sample.phrase = prompt
        samples.append(sample)
    return Dataset("generic", Path(annotations), samples)


DATASETS = ("ms-cxr", "vindr-cxr", "generic")


def read_dataset(name: str, annotations: Path, images: Path, split: str | None = None, lut=None,
                 prompt_text: str = "standardised", pairs: str = "merged", candidates: str = "lung",
                 style: str = "cxrg") -> Dataset:
    """Read a dataset by name; VinDr-CXR's prompts use `lut` (default: anatomy.lut.active_lut()) and the
    eq. 7 `candidates` ("lung" or "lut", see cxrg.bench.vindr) and prompt `style` (cxrg.vocab.STYLES);
    `pairs` as in read_ms_cxr."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset '{name}'", hint=f"choose one of: {', '.join(DATASETS)}")
    if split is not None and name != "ms-cxr":
        raise UsageError("--split applies to --dataset ms-cxr only")
    if name == "ms-cxr":
        return read_ms_cxr(annotations, images, split=split, prompt_text=prompt_text, pairs=pairs)
    if name == "vindr-cxr":
        from cxrg.anatomy.lut import active_lut
        from cxrg.bench.vindr import read_vindr

        dataset, notes = read_vindr(annotations, images, lut or active_lut(), candidates=candidates,
                                    style=style)
        dataset.notes.extend(notes)
        return dataset
    return read_generic(annotations, images)
