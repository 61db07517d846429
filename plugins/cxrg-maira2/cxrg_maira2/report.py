"""`cxrg-maira2-report RUN_DIR`: MAIRA-2's "no prediction" answers per class, from a `cxrg bench` run.

The harness records an answer without a box as that sample's error ("no prediction: ...") and leaves it out
of the statistics. This report counts them per class and gives mIoU both ways: over the answered samples
(what the harness reports) and with each "no prediction" counted as 0.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from cxrg.errors import CxrgError, InputError
from cxrg_maira2.model import NO_PREDICTION


@dataclass
class ClassCounts:
    samples: int = 0
    no_prediction: int = 0
    other_errors: int = 0
    miou_sum: float = 0.0

    @property
    def answered(self) -> int:
        return self.samples - self.no_prediction - self.other_errors

    def miou_answered(self) -> float:
        return self.miou_sum / self.answered if self.answered else float("nan")

    def miou_zero_filled(self) -> float:
        scored = self.answered + self.no_prediction
        return self.miou_sum / scored if scored else float("nan")


def count_by_class(per_sample: Path, model: str = "maira-2") -> dict[str, ClassCounts]:
    if not per_sample.is_file():
        raise InputError(f"no per_sample.csv in the run folder {per_sample.parent}",
                         hint="pass the --out folder of a `cxrg bench` run")
    counts: dict[str, ClassCounts] = {}
    with per_sample.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("model") != model:
                continue
            entry = counts.setdefault(row["category"], ClassCounts())
            entry.samples += 1
            if row.get("status") == "no-prediction" or row["error"].startswith(f"{NO_PREDICTION}:"):
                entry.no_prediction += 1
            elif row["error"] or not row["miou"]:
                entry.other_errors += 1
            else:
                entry.miou_sum += float(row["miou"])
    if not counts:
        raise InputError(f"the run has no {model} rows", where=str(per_sample))
    return dict(sorted(counts.items()))


def format_table(counts: dict[str, ClassCounts]) -> str:
    lines = ["| Class | samples | no prediction | other errors | mIoU answered | mIoU no prediction = 0 |",
             "|---|---|---|---|---|---|"]
    total = ClassCounts()
    for category, entry in counts.items():
        lines.append(f"| {category} | {entry.samples} | {entry.no_prediction} | {entry.other_errors} | "
                     f"{entry.miou_answered():.3f} | {entry.miou_zero_filled():.3f} |")
        total.samples += entry.samples
        total.no_prediction += entry.no_prediction
        total.other_errors += entry.other_errors
        total.miou_sum += entry.miou_sum
    lines.append(f"| **All samples (pooled)** | {total.samples} | {total.no_prediction} | "
                 f"{total.other_errors} | "
                 f"{total.miou_answered():.3f} | {total.miou_zero_filled():.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: cxrg-maira2-report RUN_DIR   (the --out folder of `cxrg bench --models maira-2 ...`)",
              file=sys.stderr)
        sys.exit(2)
    try:
        print(format_table(count_by_class(Path(args[0]) / "per_sample.csv")))
    except CxrgError as exc:
        print(f"cxrg-maira2-report: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
