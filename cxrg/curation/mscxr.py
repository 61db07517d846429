"""MS-CXR -> MS-CXR-loc: every phrase rewritten to "{location} {pathology}", phrases without one dropped.

The output keeps the MS-CXR CSV format (same columns in the same order, one row per box), with
`label_text` replaced by the prompt and the phrase kept in a new last column `original_label_text`, so
that `cxrg bench --dataset ms-cxr --annotations <it>` reads it unchanged. The pathology is the row's
`category_name`. A phrase's locations are those of its mention of the finding or, when it names the
finding another way ("right lower lobe airspace process"), of the whole phrase. The paper dropped 117 of
1,160 pairs this way; each drop here is counted by reason.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cxrg.curation.anatomy import groups as find_groups
from cxrg.curation.anatomy import outside_list
from cxrg.curation.query import Extractor, SentenceQuery
from cxrg.curation.rules import analyse
from cxrg.curation.text import tokens
from cxrg.errors import InputError
from cxrg.runs import atomic_write_csv, atomic_write_text
from cxrg.vocab import canonical_pathology, format_prompt

MS_CXR_COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                  "image_width", "image_height")
NO_LOCATION_WORD = "no location word"
NO_SIDE = "location without a side"
UNKNOWN_CATEGORY = "category is not one of the 8 pathologies"
OUTSIDE_LIST = "area outside the location list"
PAPER_PAIRS = 1043
"""MS-CXR-loc's image-text pairs in the paper (1,160 MS-CXR pairs, 117 excluded; Sec. 4.1, App. I)."""
PAPER_N = {"Pneumonia": 146, "Pneumothorax": 204, "Consolidation": 105, "Atelectasis": 55, "Edema": 41,
           "Cardiomegaly": 333, "Lung Opacity": 78, "Pleural Effusion": 81}
"""Table 1's N per class (they add up to PAPER_PAIRS)."""


@dataclass
class Phrase:
    dicom_id: str
    category: str
    text: str
    rows: list[dict[str, str]]
    prompt: str = ""
    reason: str = ""


@dataclass
class LocResult:
    header: list[str]
    phrases: list[Phrase]
    dropped: Counter[str] = field(default_factory=Counter)
    shared_prompts: int = 0
    """Kept phrases whose (image, prompt) equals another kept phrase's: `cxrg bench` reads them as one
    sample with both phrases' boxes."""
    merged_samples: int = 0
    """How many samples those shared phrases become (shared_prompts phrases -> merged_samples samples)."""
    split_paths: int = 0
    """(dicom_id, phrase) pairs found with more than one image path: one phrase per path, never pooled."""

    @property
    def kept(self) -> list[Phrase]:
        return [p for p in self.phrases if p.prompt]


def read_phrases(path: Path) -> tuple[list[str], list[Phrase]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"MS-CXR annotations not found: {path}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [(name or "").strip() for name in (reader.fieldnames or [])]
            missing = [name for name in MS_CXR_COLUMNS if name not in header]
            if missing:
                raise InputError(f"MS-CXR annotations lack column(s) {', '.join(missing)}", where=str(path),
                                 hint=f"expected columns: {', '.join(MS_CXR_COLUMNS)}")
            rows = [{(k or "").strip(): (v or "") for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError as exc:
        raise InputError("MS-CXR annotations are not UTF-8 text", where=str(path)) from exc
    except csv.Error as exc:
        raise InputError(f"MS-CXR annotations are not valid CSV: {exc}", where=str(path)) from exc
    phrases: dict[tuple[str, str, str], Phrase] = {}
    for row in rows:  # one phrase per image file: boxes of another path are never pooled with these
        key = (row["dicom_id"].strip(), row["label_text"].strip(), row["path"].strip())
        if key not in phrases:
            phrases[key] = Phrase(key[0], row["category_name"].strip(), key[1], [])
        phrases[key].rows.append(row)
    return header, list(phrases.values())


def to_ms_cxr_loc(path: Path, extractor: Extractor, style: str = "cxrg") -> LocResult:
    """Rewrite every phrase of an MS-CXR CSV into the prompt `style` (cxrg.vocab.STYLES); phrases without
    a location get a drop reason."""
    header, phrases = read_phrases(path)
    result = LocResult(header, phrases)
    queries: list[SentenceQuery] = []
    todo: list[Phrase] = []
    for phrase in phrases:
        try:
            pathology = canonical_pathology(phrase.category)
        except InputError:
            phrase.reason = UNKNOWN_CATEGORY
            continue
        phrase.category = pathology
        queries.append(SentenceQuery(phrase.text, pathology, analyse(phrase.text, pathology), whole=True))
        todo.append(phrase)
    for phrase, query, locations in zip(todo, queries, extractor.locations(queries), strict=True):
        if locations:
            phrase.prompt = format_prompt(locations, phrase.category, style=style)
        else:
            phrase.reason = drop_reason(phrase.text, query, extractor)
    result.dropped = Counter(p.reason for p in phrases if not p.prompt)
    seen: Counter[tuple[str, str, str]] = Counter((p.dicom_id, p.rows[0]["path"].strip(), p.prompt)
                                                  for p in result.kept)
    result.shared_prompts = sum(n for n in seen.values() if n > 1)
    result.merged_samples = sum(1 for n in seen.values() if n > 1)
    paths = Counter((p.dicom_id, p.text) for p in phrases)
    result.split_paths = sum(1 for n in paths.values() if n > 1)
    return result


def drop_reason(text: str, query: SentenceQuery, extractor: Extractor) -> str:
    """Why a phrase got no location: the extractor's own reason (RadGraph-XL: no anatomy tagged, an area
    outside the location list, ...) or, from the words, no location word / a location without a side."""
    why = getattr(extractor, "why_empty", None)
    reason = why(query) if why is not None else ""
    if reason:
        return reason
    toks = tokens(text)
    outside = outside_list(t.text for t in toks)
    if outside and getattr(extractor, "mappings", "extended") == "list":
        return f"{OUTSIDE_LIST} ({', '.join(sorted(set(outside)))})"
    return NO_SIDE if find_groups(toks) else NO_LOCATION_WORD


def class_counts(result: LocResult) -> list[tuple[str, int, int | None]]:
    """(class, kept pairs, Table 1's N) per class, the paper's classes first."""
    kept = Counter(p.category for p in result.kept)
    names = [*PAPER_N, *sorted(set(kept) - set(PAPER_N))]
    return [(name, kept.get(name, 0), PAPER_N.get(name)) for name in names]


def count_lines(result: LocResult, pairs: str = "phrase") -> list[str]:
    """The pair count and per-class N beside the paper's Table 1 (printed and written to summary.md)."""
    total, kept = len(result.phrases), len(result.kept)
    samples = kept if pairs == "phrase" else kept - result.shared_prompts + result.merged_samples
    lines = [f"{total} phrases = {kept} kept + {total - kept} dropped; {samples} samples in `cxrg bench` "
             f"(loc_pairs={pairs}); the paper: 1,160 pairs, {PAPER_PAIRS:,} kept, 117 dropped"]
    lines += [f"  {name}: N={n}" + (f" (Table 1: N={paper})" if paper is not None else "")
              for name, n, paper in class_counts(result)]
    return lines


def write_ms_cxr_loc(result: LocResult, out: Path, source: Path) -> Path:
    """The MS-CXR-loc CSV (next to dropped.csv and summary.md) in `out`; returns the CSV's path."""
    out = Path(out)
    columns = [c for c in result.header if c != "original_label_text"] + ["original_label_text"]
    rows = []
    for phrase in result.kept:
        for row in phrase.rows:
            rows.append({**row, "label_text": phrase.prompt, "original_label_text": phrase.text})
    target = out / f"{Path(source).stem}_loc.csv"
    atomic_write_csv(target, columns, rows)
    dropped = [{"dicom_id": p.dicom_id, "category_name": p.category, "label_text": p.text, "reason": p.reason,
                "boxes": len(p.rows)} for p in result.phrases if not p.prompt]
    atomic_write_csv(out / "dropped.csv", ("dicom_id", "category_name", "label_text", "reason", "boxes"),
                     dropped)
    atomic_write_text(out / "summary.md", loc_markdown(result, source))
    return target


def loc_markdown(result: LocResult, source: Path) -> str:
    buffer = io.StringIO()
    total = len(result.phrases)
    kept = len(result.kept)
    buffer.write(f"# MS-CXR-loc\n\nFrom {source}: {total} phrases, {kept} kept, {total - kept} dropped.\n\n")
    buffer.write("| dropped because | phrases |\n|---|---:|\n")
    for reason, count in result.dropped.most_common():
        buffer.write(f"| {reason} | {count} |\n")
    buffer.write(f"\nKept pairs: {kept} (the paper's MS-CXR-loc: {PAPER_PAIRS:,}).\n")
    buffer.write("\n| category | kept | Table 1 N |\n|---|---:|---:|\n")
    for category, count, paper in class_counts(result):
        buffer.write(f"| {category} | {count} | {paper if paper is not None else '-'} |\n")
    if result.shared_prompts:
        buffer.write(f"\n{result.shared_prompts} kept phrases share an image and a prompt with another one: "
                     f"one sample each under loc_pairs=phrase (the paper), {result.merged_samples} merged "
                     "samples with all their boxes under loc_pairs=merged.\n")
    if result.split_paths:
        buffer.write(f"\n{result.split_paths} (dicom_id, phrase) pairs appear with more than one image path; "
                     "each path is its own phrase (boxes are never pooled across image files).\n")
    buffer.write("\nExamples:\n\n")
    for phrase in result.kept[:10]:
        buffer.write(f"- \"{phrase.text}\" -> `{phrase.prompt}`\n")
    return buffer.getvalue()
