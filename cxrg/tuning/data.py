"""Tuning samples from a curated manifest (`cxrg curate`'s manifest.csv or manifest.jsonl)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from cxrg.errors import InputError
from cxrg.images import resolve_image
from cxrg.phrases import normalise
from cxrg.runs import check_complete, raw_row  # importing cxrg.runs also sets the CSV field-size policy
from cxrg.vocab import Prompt, prompt_locations


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
    kept: list[tuple[str, str, str]] = field(default_factory=list)
    """(sample id, prompt, canonical reading) of vocabulary prompts kept as written although
    cxrg.phrases.normalise reads them differently (e.g. "left pleural edema" is read "left edema")."""
    read: list[tuple[str, str, str]] = field(default_factory=list)
    """(sample id, free text, the prompt read from it) of prompts outside the vocabulary's grammar."""


def manifest_prompt(text: str) -> tuple[str, str | None, bool]:
    """(prompt used, the other reading or None, whether it was read from free text).

    A prompt in the vocabulary's grammar (`Prompt.parse`) is kept as written: its locations are the ones
    the image was annotated with, and the canonical reading may drop one ("left pleural edema" -> "left
    edema"), which would silently change the tuning target. Free text is read with
    cxrg.phrases.normalise, the one reading of a phrase."""
    try:
        written = Prompt.parse(text).format()
    except InputError:
        reading = normalise(text).prompt
        return reading, reading, True
    canonical_reading = normalise(written).prompt
    return written, (canonical_reading if canonical_reading != written else None), False


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
    kept: list[tuple[str, str, str]] = []
    read: list[tuple[str, str, str]] = []
    for k, row in enumerate(rows, start=1):
        sample_id = str(row.get("sample_id") or f"row {k}")
        try:
            if None in row:
                raise ValueError(f"row {k} has more fields than the header")
            if not row.get("image_path"):
                raise ValueError("no image_path")
            image = find_image(images, str(row["image_path"]))
            text = str(row.get("prompt") or "")
            prompt, other, free = manifest_prompt(text)
            samples.append(TuningSample(sample_id, image, prompt, prompt_locations(prompt)))
            if free:
                read.append((sample_id, text, prompt))
            elif other is not None:
                kept.append((sample_id, prompt, other))
        except (ValueError, InputError) as exc:
            skipped.append((sample_id, exc.one_line() if isinstance(exc, InputError) else str(exc)))
    if not samples:
        reason = skipped[0][1] if skipped else "it has no rows"
        raise InputError(f"no usable sample in the manifest ({len(skipped)} skipped; first: {reason})",
                         where=str(path), hint="check --images and the manifest's image_path column")
    return Manifest(samples, skipped, len(rows), kept, read)


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
