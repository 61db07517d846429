"""Report curation: the extractors' precision and recall on the labelled sentences, and reports per second.

1. Precision / recall / exact match of the rules extractor (and RadGraph-XL and hybrid with
   --radgraph-dir) on cxrg.curation.goldset, through the pipeline's own negation/resolution filter.
2. Throughput of the rules pipeline on a synthetic MIMIC-CXR-layout corpus written to a temporary folder:
   every study has exactly one of the 8 labels positive and a PA image, so every report goes through the
   whole pipeline (read file, sections, sentences, filter, locations). Timed: reading + curating; writing the
   outputs (manifest, skip log, summary, figure) is timed separately. Target: >= 2,000 reports/s.
3. The same on the IU reports (../shared/data/reports/indiana_reports.csv) when present.

    python benchmarks/bench_curation.py [--reports 5000] [--radgraph-dir DIR]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).parent))
import argparse
import csv
import platform
import random
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # noqa: E402

from cxrg.curation.extractors import RulesExtractor, make_extractor
from cxrg.curation.goldset import GOLD, score_extractor
from cxrg.curation.outputs import write_all
from cxrg.curation.pipeline import Curator
from cxrg.curation.reports import read_iu, read_mimic
from cxrg.vocab import PATHOLOGIES

IU = Path(__file__).resolve().parents[2] / "shared" / "data" / "reports" / "indiana_reports.csv"
CHEXPERT = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices"]
NORMAL = ["Heart size is normal.", "The mediastinal and hilar contours are within normal limits.",
          "No pneumothorax.", "No focal consolidation.", "There is no pleural effusion.",
          "Pulmonary vasculature is normal.", "Osseous structures are intact.",
          "A right internal jugular catheter terminates in the mid SVC.",
          "Surgical clips in the upper abdomen.", "No acute cardiopulmonary process.",
          "Lungs are well expanded and clear."]




def write_corpus(root: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """n MIMIC-CXR-layout reports (findings + impression, ~8 sentences), one label each, PA images."""
    rng = random.Random(seed)
    by_pathology = {p: [g.sentence for g in GOLD if g.pathology == p] for p in PATHOLOGIES}
    labels, meta = [], []
    for k in range(n):
        subject, study = 10000000 + k, 50000000 + k
        pathology = PATHOLOGIES[k % len(PATHOLOGIES)]
        findings = rng.sample(NORMAL, 5) + rng.sample(by_pathology[pathology], 2)
        rng.shuffle(findings)
        impression = rng.sample(by_pathology[pathology], 1)
        text = ("                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
                " INDICATION:  ___-year-old with dyspnea.\n\n COMPARISON:  ___\n\n"
                f" FINDINGS:\n \n {'  '.join(findings)}\n \n IMPRESSION:\n \n {impression[0]}\n")
        folder = root / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(text)
        labels.append({"subject_id": subject, "study_id": study,
                       **{name: ("1.0" if name == pathology else "") for name in CHEXPERT}})
        meta.append({"dicom_id": f"d{k:08d}", "subject_id": subject, "study_id": study, "ViewPosition": "PA"})
    chexpert, metadata = root / "chexpert.csv", root / "metadata.csv"
    for path, rows in ((chexpert, labels), (metadata, meta)):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root, chexpert, metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=5000, help="synthetic MIMIC-layout reports")
    parser.add_argument("--radgraph-dir", type=Path,
                        help="also score RadGraph-XL and hybrid (the folder holding radgraph-xl/; the real "
                             "weights: a test checkpoint gives meaningless scores)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {cpu_model()} python={platform.python_version()}")

    print(f"\n1. labelled sentences ({len(GOLD)}), locations micro-averaged")
    extractors = [RulesExtractor()]
    if args.radgraph_dir:
        extractors += [make_extractor(name, args.radgraph_dir)[0] for name in ("radgraph", "hybrid")]
    for extractor in extractors:
        result = score_extractor(extractor)
        print(f"   {extractor.name:9s} precision {result.precision:.3f}  recall {result.recall:.3f}  "
              f"exact {result.exact:.3f}  (TP {result.tp}, FP {result.fp}, FN {result.fn})")
        for line in result.lines()[1:]:
            print("    " + line)

    print(f"\n2. rules pipeline on {args.reports} synthetic MIMIC-CXR-layout reports (one label each)")
    with tempfile.TemporaryDirectory() as tmp:
        root, chexpert, metadata = write_corpus(Path(tmp), args.reports)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            total, stream = read_mimic(root, chexpert, metadata)
            result = Curator(RulesExtractor()).run(stream)
            best = min(best, time.perf_counter() - start)
        start = time.perf_counter()
        write_all(result, Path(tmp) / "out")
        written = time.perf_counter() - start
    print(f"   {total} reports, {result.sentences.total} sentences, {len(result.samples)} samples; "
          f"counts add up: {result.adds_up()}")
    print(f"   read + curate: {best:.2f} s = {total / best:,.0f} reports/s (best of 3; target >= 2,000)")
    print(f"   writing outputs (manifest, skips, summary, figure): {written:.2f} s")

    if IU.is_file():
        total, stream = read_iu(IU)
        items = list(stream)
        start = time.perf_counter()
        result = Curator(RulesExtractor()).run(items)
        took = time.perf_counter() - start
        print(f"\n3. IU reports: {total} reports in {took:.2f} s = {total / took:,.0f} reports/s; "
              f"{len(result.samples)} samples")
    else:
        print("\n3. IU reports: not present (../shared/data), skipped")


if __name__ == "__main__":
    main()
