"""The sample and dataset types every reader produces, and the one CSV reader they share.

Its own module so that the dataset readers (datasets.py, vindr.py) import it without importing each other.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrg.errors import InputError
from cxrg.runs import check_complete, csv_cell_raw  # importing cxrg.runs also sets the CSV field-size policy

ROW_ERROR = "_error"
"""Key of a row dict holding what is wrong with the row itself (more fields than the header)."""


@dataclass
class Sample:
    sample_id: str
    image_path: Path | None
    category: str
    prompt: str
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    """xyxy at pixel edges, original image pixels."""
    image_size: tuple[int, int] | None = None
    """(height, width) stated by the annotations, checked against the file when given."""
    rows: tuple[int, ...] = ()
    error: str = ""
    phrase: str = ""
    """The phrase as the dataset wrote it (MS-CXR's label_text; MS-CXR-loc's original_label_text)."""
    vocabulary_prompt: str = ""
    """The prompt read into the vocabulary (cxrg.phrases.normalise), for models whose card says they take
    vocabulary prompts; empty when it equals `prompt` or could not be read."""


@dataclass
class Dataset:
    name: str
    source: Path
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)
    """What the reader did with rows that are not samples (other classes, ...), for the run's log."""

    @property
    def categories(self) -> list[str]:
        return sorted({s.category for s in self.samples})


def read_csv_rows(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"annotations file not found: {path}", hint="check --annotations")
    check_complete(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise InputError(f"annotations file lacks column(s) {', '.join(missing)}", where=str(path),
                                 hint=f"expected columns: {', '.join(required)}")
            rows = []
            for row in reader:
                extra = row.pop(None, None)  # fields beyond the header: the row is malformed, not the file
                clean = {(k or "").strip(): csv_cell_raw(v or "").strip() for k, v in row.items()}
                if extra:
                    clean[ROW_ERROR] = f"{len(extra)} more field(s) than the header"
                rows.append(clean)
            return rows
    except UnicodeDecodeError as exc:
        raise InputError("annotations file is not UTF-8 text", where=str(path)) from exc
    except csv.Error as exc:
        raise InputError(f"annotations file is not valid CSV: {exc}", where=str(path)) from exc
