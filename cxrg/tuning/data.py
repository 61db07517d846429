"""Tuning samples from a curated manifest (`cxrg curate`'s manifest.csv or manifest.jsonl)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from cxrg.errors import InputError
from cxrg.images import resolve_image
from cxrg.phrases import normalise
from cxrg.runs import check_complete, raw_row  # importing cxrg.runs also sets the CSV field-size policy
from cxrg.vocab import prompt_locations


@dataclass(frozen=True)
class TuningSample:
    sample_id: str
    image_path: Path
    prompt: str
    locations: tuple[str, ...]


@dataclass
class Manifest:
    samples: list[TuningSample]
    skipped: list[tuple[str, str]]
    """(sample id or row, reason) for every row that cannot be used; rows = samples + skipped."""
    rows: int


def find_image(images: Path, relative: str) -> Path:
    """The manifest's image under `images`, or the same IU X-ray image under its other file name (Kaggle's
    `3_IM-1384-1001.dcm.png` or Open-i's `CXR3_IM-1384-1001.png`)."""
    from cxrg.curation.reports import iu_file_aliases

    image = resolve_image(images, relative)
    if image.is_file():
        return image
    for alias in iu_file_aliases(Path(relative).name):
        other = resolve_image(images, str(Path(relative).with_name(alias)))
        if other.is_file():
            return other
    raise ValueError(f"image not found: {image}")


def read_manifest(path: Path, images: Path) -> Manifest:
    """Rows need sample_id, image_path (relative to `images`, or absolute inside it) and prompt."""
    path = Path(path)
    if not path.is_file():
        raise InputError("manifest not found", where=str(path), hint="make one with `cxrg curate`")
    check_complete(path)
    rows = _rows(path)
    first_seen: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    for k, row in enumerate(rows, start=1):
        sample_id = str(row.get("sample_id") or "")
        if sample_id and sample_id in first_seen:
            repeated.setdefault(sample_id, [first_seen[sample_id]]).append(k)
        first_seen.setdefault(sample_id, k)
    if repeated:
        listed = "; ".join(f"{sid}: rows {', '.join(map(str, ks))}" for sid, ks in list(repeated.items())[:5])
        raise InputError(f"the manifest repeats sample_id(s) ({len(repeated)}): {listed}"
                         + (" ..." if len(repeated) > 5 else ""), where=str(path),
                         hint="each sample needs its own sample_id (rows count from 1 after the header)")
    samples, skipped = [], []
    for k, row in enumerate(rows, start=1):
        sample_id = str(row.get("sample_id") or f"row {k}")
        try:
            if None in row:
                raise ValueError(f"row {k} has more fields than the header")
            if not row.get("image_path"):
                raise ValueError("no image_path")
            image = find_image(images, str(row["image_path"]))
            prompt = normalise(str(row.get("prompt") or "")).prompt  # the one reading of a phrase
            samples.append(TuningSample(sample_id, image, prompt, prompt_locations(prompt)))
        except (ValueError, InputError) as exc:
            skipped.append((sample_id, exc.one_line() if isinstance(exc, InputError) else str(exc)))
    if not samples:
        reason = skipped[0][1] if skipped else "it has no rows"
        raise InputError(f"no usable sample in the manifest ({len(skipped)} skipped; first: {reason})",
                         where=str(path), hint="check --images and the manifest's image_path column")
    return Manifest(samples, skipped, len(rows))


def _rows(path: Path) -> list[dict]:
    try:
        if path.suffix == ".jsonl":
            lines = path.read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"sample_id", "image_path", "prompt"} - set(reader.fieldnames or [])
            if missing:
                raise InputError(f"manifest lacks column(s) {', '.join(sorted(missing))}", where=str(path))
            return [raw_row(row) for row in reader]  # cxrg writes manifests spreadsheet-safe
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read the manifest: {exc}", where=str(path)) from exc
