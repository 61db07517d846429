"""Reading reports: the MIMIC-CXR layout, a generic CSV, and the IU (Open-i) collection.

Every reader yields, for each input report, either a `Report` or a `Skip` with its reason, so that the
pipeline can count every input: nothing is dropped silently. A whole file that cannot be used (missing,
wrong columns) is an InputError; one bad row or report file is a Skip.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cxrg.runs  # noqa: F401  (sets the one CSV field-size policy of cxrg: report texts can be long)
from cxrg.errors import InputError
from cxrg.vocab import PATHOLOGIES, canonical_pathology


@dataclass
class Report:
    """One report with its positive labels among the 8 pathologies; the text may be read lazily."""

    report_id: str
    labels: tuple[str, ...]
    text: str | None = None
    path: Path | None = None
    """Read on demand when `text` is None (MIMIC-CXR: one file per study)."""
    image_id: str = ""
    image_path: str = ""
    require_sections: bool = True
    """Only the findings/impression sections count; a report without them is skipped. False for a CSV
    cell that holds the report body without headers."""
    other_labels: tuple[str, ...] = ()
    """Labels outside the 8 pathologies (kept for the skip log)."""
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Skip:
    """An input (report, label, sentence) left out, and why."""

    level: str
    """"report", "label" (one pathology of a report) or "sentence"."""
    report_id: str
    reason: str
    pathology: str = ""
    sentence_index: int | None = None
    detail: str = ""


class ReportError(Exception):
    """A report that cannot be used (unreadable file, bad encoding, empty); the message is the reason."""


def read_text(report: Report) -> str:
    """The report's text; a missing, unreadable, non-UTF-8 or empty file raises ReportError."""
    if report.text is not None:
        text = report.text
    else:
        if report.path is None:
            raise ReportError("no report text")
        try:
            raw = report.path.read_bytes()
        except FileNotFoundError:
            raise ReportError("report file missing") from None
        except OSError as exc:
            raise ReportError(f"report file unreadable ({exc.strerror or exc})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReportError(f"bad encoding (not UTF-8 at byte {exc.start})") from None
    if "\x00" in text:
        raise ReportError("bad encoding (binary content)")
    if not text.strip():
        raise ReportError("empty report")
    return text


# --- CSV helpers --------------------------------------------------------------------------------------

def _open_rows(path: Path, required: Sequence[str], what: str) -> tuple[list[str], list[dict[str, str]]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    # surrogateescape: a row with bytes that are not UTF-8 is skipped with its reason, not the whole file
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        try:
            reader = csv.DictReader(handle)
            header = [(name or "").strip() for name in (reader.fieldnames or [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise InputError(f"{what} lacks column(s) {', '.join(missing)}", where=str(path),
                                 hint=f"expected columns: {', '.join(required)}")
            rows = [{(k or "").strip(): (v or "") for k, v in row.items() if k is not None} for row in reader]
        except csv.Error as exc:
            raise InputError(f"{what} is not valid CSV: {exc}", where=str(path)) from exc
    return header, rows


def _bad_encoding(row: dict[str, str]) -> bool:
    return any(any("\udc80" <= ch <= "\udcff" for ch in value) for value in row.values())


def parse_labels(cell: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A label cell ("Pleural Effusion", "Edema; Cardiomegaly", "effusion|other") -> (the 8, the rest)."""
    known: list[str] = []
    other: list[str] = []
    for piece in cell.replace("|", ";").split(";"):
        name = piece.strip()
        if not name:
            continue
        try:
            canonical = canonical_pathology(name)
        except InputError:
            other.append(name)
            continue
        if canonical not in known:
            known.append(canonical)
    return tuple(known), tuple(other)


# --- generic CSV --------------------------------------------------------------------------------------

GENERIC_COLUMNS = ("id", "text", "label")


def read_generic(path: Path) -> tuple[int, Iterator[Report | Skip]]:
    """A CSV with columns id, text, label [, image]: one report per row.

    `label` holds one or more pathology names (any dataset spelling, separated by ";" or "|"); `text` the
    report, with or without FINDINGS:/IMPRESSION: headers (without them, the whole text is used).
    Returns the number of rows and the stream.
    """
    _, rows = _open_rows(path, GENERIC_COLUMNS, "reports CSV")

    def stream() -> Iterator[Report | Skip]:
        seen: set[str] = set()
        for line, row in enumerate(rows, start=2):
            report_id = row.get("id", "").strip()
            if _bad_encoding(row):
                yield Skip("report", report_id or f"row {line}", "bad encoding (not UTF-8)",
                           detail=f"row {line}")
                continue
            if not report_id:
                yield Skip("report", f"row {line}", "malformed row (empty id)", detail=f"row {line}")
                continue
            if report_id in seen:
                yield Skip("report", report_id, "duplicate report id", detail=f"row {line}")
                continue
            seen.add(report_id)
            text = row.get("text", "")
            labels, other = parse_labels(row.get("label", ""))
            yield Report(report_id, labels, text=text, image_id=Path(row.get("image", "")).stem,
                         image_path=row.get("image", "").strip(), require_sections=_has_headers(text),
                         other_labels=other)

    return len(rows), stream()


def _has_headers(text: str) -> bool:
    from cxrg.curation.text import sections

    found = sections(text)
    return any(name in found for name in ("findings", "impression"))


# --- IU X-ray (Open-i) --------------------------------------------------------------------------------

IU_COLUMNS = ("uid", "Problems", "findings", "impression")

# IU "Problems" terms -> pathology. CheXpert counts infiltrates and airspace disease as lung opacity and
# vascular congestion as edema; "Density" and "Markings" are too vague and stay out.
IU_PROBLEMS: dict[str, str] = {
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Pleural Effusion": "Pleural Effusion",
    "Opacity": "Lung Opacity",
    "Airspace Disease": "Lung Opacity",
    "Infiltrate": "Lung Opacity",
    "Pulmonary Atelectasis": "Atelectasis",
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Consolidation": "Consolidation",
    "Pulmonary Edema": "Edema",
    "Edema": "Edema",
    "Pulmonary Congestion": "Edema",
}


def is_iu_csv(path: Path) -> bool:
    """Whether a CSV has the IU reports' columns (uid, MeSH, Problems, findings, impression)."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = next(csv.reader(handle), [])
    except OSError:
        return False
    return all(name in header for name in IU_COLUMNS)


def read_iu(path: Path, projections: Path | None = None) -> tuple[int, Iterator[Report | Skip]]:
    """The IU collection (indiana_reports.csv): labels from Problems, text from findings + impression.

    The frontal image of each report comes from indiana_projections.csv (uid, filename, projection),
    looked for next to the reports file when not given.
    """
    _, rows = _open_rows(path, IU_COLUMNS, "IU reports CSV")
    frontal: dict[str, str] = {}
    projections = projections or Path(path).with_name("indiana_projections.csv")
    if projections.is_file():
        _, projection_rows = _open_rows(projections, ("uid", "filename", "projection"), "IU projections CSV")
        for row in projection_rows:
            if row["projection"].strip().lower() == "frontal":
                frontal.setdefault(row["uid"].strip(), row["filename"].strip())

    def stream() -> Iterator[Report | Skip]:
        seen: set[str] = set()
        for line, row in enumerate(rows, start=2):
            uid = row.get("uid", "").strip()
            if _bad_encoding(row):
                yield Skip("report", uid or f"row {line}", "bad encoding (not UTF-8)", detail=f"row {line}")
                continue
            if not uid or uid in seen:
                yield Skip("report", uid or f"row {line}", "malformed row (empty or duplicate uid)",
                           detail=f"row {line}")
                continue
            seen.add(uid)
            labels: list[str] = []
            other: list[str] = []
            for term in row.get("Problems", "").split(";"):
                term = term.strip()
                if term in IU_PROBLEMS:
                    if IU_PROBLEMS[term] not in labels:
                        labels.append(IU_PROBLEMS[term])
                elif term and term not in other:
                    other.append(term)
            parts = []
            for header, column in (("FINDINGS", "findings"), ("IMPRESSION", "impression")):
                if row.get(column, "").strip():
                    parts.append(f"{header}: {row[column].strip()}")
            if not parts:
                yield Skip("report", uid, "no findings or impression section")
                continue
            image = frontal.get(uid, "")
            yield Report(uid, tuple(labels), text="\n".join(parts), image_id=Path(image).stem,
                         image_path=image, other_labels=tuple(other))

    return len(rows), stream()


# --- MIMIC-CXR ----------------------------------------------------------------------------------------

CHEXPERT_ID_COLUMNS = ("subject_id", "study_id")
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
POSITIVE, UNCERTAIN = "1.0", "-1.0"


def _number_text(value: str) -> str:
    """'1', '1.0', ' 1.00 ' -> '1.0'; '' stays ''; anything else is returned unchanged."""
    value = value.strip()
    try:
        return str(float(value)) if value else ""
    except ValueError:
        return value


def read_mimic(root: Path, chexpert: Path, metadata: Path | None = None, views: Sequence[str] = ("PA",),
               studies: set[str] | None = None, uncertain_positive: bool = False,
               ) -> tuple[int, Iterator[Report | Skip]]:
    """MIMIC-CXR: reports at ROOT/files/pNN/pSUBJECT/sSTUDY.txt, labels from the CheXpert CSV.

    One report per row of the CheXpert CSV (mimic-cxr-2.0.0-chexpert.csv). With the metadata CSV
    (mimic-cxr-2.0.0-metadata.csv), a study needs an image whose ViewPosition is in `views`; its image is
    the first such dicom_id in sorted order, at files/pNN/pSUBJECT/sSTUDY/DICOM.jpg (MIMIC-CXR-JPG).
    `studies` keeps only the given study ids (with or without the leading "s").
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"MIMIC-CXR reports folder not found: {root}",
                         hint="give the folder that holds files/p10/... (or files/ itself)")
    files = root / "files" if (root / "files").is_dir() else root
    _, rows = _open_rows(chexpert, (*CHEXPERT_ID_COLUMNS, *PATHOLOGIES), "CheXpert labels CSV")
    images: dict[str, list[tuple[str, str]]] | None = None
    if metadata is not None:
        _, meta_rows = _open_rows(metadata, METADATA_COLUMNS, "MIMIC-CXR metadata CSV")
        images = {}
        for row in meta_rows:
            images.setdefault(_clean_id(row["study_id"]), []).append(
                (row["dicom_id"].strip(), row["ViewPosition"].strip().upper()))
    wanted_views = {v.strip().upper() for v in views if v.strip()}
    positive = {POSITIVE, UNCERTAIN} if uncertain_positive else {POSITIVE}

    def stream() -> Iterator[Report | Skip]:
        seen: set[str] = set()
        for line, row in enumerate(rows, start=2):
            subject, study = _clean_id(row["subject_id"]), _clean_id(row["study_id"])
            report_id = f"s{study}" if study else f"row {line}"
            if not subject.isdigit() or not study.isdigit():
                yield Skip("report", report_id, "malformed label row (subject_id/study_id)",
                           detail=f"row {line}")
                continue
            if study in seen:
                yield Skip("report", report_id, "duplicate study in the labels CSV", detail=f"row {line}")
                continue
            seen.add(study)
            if studies is not None and study not in studies:
                yield Skip("report", report_id, "not in the allowed study list")
                continue
            values = {name: _number_text(row.get(name, "")) for name in PATHOLOGIES}
            bad = [f"{k}={v!r}" for k, v in values.items() if v not in ("", "0.0", POSITIVE, UNCERTAIN)]
            if bad:
                yield Skip("report", report_id, "malformed label value", detail=f"row {line}: {bad[0]}")
                continue
            labels = tuple(name for name in PATHOLOGIES if values[name] in positive)
            folder = files / f"p{subject[:2]}" / f"p{subject}"
            image_id = image_path = ""
            if images is not None:
                candidates = sorted(d for d, view in images.get(study, []) if view in wanted_views)
                if not candidates:
                    yield Skip("report", report_id, f"no {'/'.join(sorted(wanted_views))} image",
                               detail=", ".join(sorted({v or '?' for _, v in images.get(study, [])}))
                               or "study not in the metadata")
                    continue
                image_id = candidates[0]
                image_path = f"files/p{subject[:2]}/p{subject}/s{study}/{image_id}.jpg"
            yield Report(report_id, labels, path=folder / f"s{study}.txt", image_id=image_id,
                         image_path=image_path, notes={"subject_id": subject, "study_id": study})

    return len(rows), stream()


def _clean_id(value: str) -> str:
    value = value.strip()
    if value[:1] in ("s", "p", "S", "P"):
        value = value[1:]
    if value.endswith(".0"):
        value = value[:-2]
    return value


def read_study_list(path: Path) -> set[str]:
    """Study ids, one per line or in a CSV column named study_id ("s5..." or "5...")."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"study list not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and "," in lines[0]:
        header = [h.strip() for h in lines[0].split(",")]
        if "study_id" not in header:
            raise InputError("study list CSV has no study_id column", where=str(path))
        col = header.index("study_id")
        values = [line.split(",")[col] for line in lines[1:]]
    else:
        values = [line for line in lines if line.lower() not in ("study_id", "study")]
    ids = {_clean_id(v) for v in values if _clean_id(v).isdigit()}
    if not ids:
        raise InputError("study list holds no study id", where=str(path))
    return ids


def iu_file_aliases(name: str) -> list[str]:
    """The other spelling of an IU X-ray image file: the Kaggle copy's `3_IM-1384-1001.dcm.png` is Open-i's
    `CXR3_IM-1384-1001.png` and back (curated manifests name the Kaggle files; many users hold Open-i's)."""
    import re

    kaggle = re.fullmatch(r"(\d+)_(IM-\d+-\d+)\.dcm\.png", name)
    if kaggle:
        return [f"CXR{kaggle[1]}_{kaggle[2]}.png"]
    openi = re.fullmatch(r"CXR(\d+)_(IM-\d+-\d+)\.png", name)
    if openi:
        return [f"{openi[1]}_{openi[2]}.dcm.png"]
    return []
