"""Report speed: `cxrg report` on a synthetic bench run of 1,000 samples x 4 models (target: under 60 s).

The run folder is what `cxrg bench` leaves (cxrg.report.synthetic): MS-CXR-format CSV, JPEG images in the
MIMIC-CXR-JPG layout (two phrases per image), per_sample.csv, the saved heatmaps (float16, at most 256 px),
summary.json and results.png. Only write_report is timed (reading the run and the dataset, windowing and
shrinking every radiograph, drawing every overlay and Otsu mask, writing the page); making the run is not.
Prints the machine, the settings, the time, and the size of what was written.

    python benchmarks/bench_report.py [--samples 1000] [--models 4] [--height 320] [--keep DIR]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).parent))
import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_model  # noqa: E402

from cxrg.report import write_report
from cxrg.report.synthetic import synthetic_run

TARGET_SECONDS = 60.0


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--height", type=int, default=320, help="image height in pixels (width = 0.8 x)")
    parser.add_argument("--keep", type=Path, help="make the run here and keep it (default: a temp folder)")
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {cpu_model()} cpus={os.cpu_count()} "
          f"python={platform.python_version()} numpy={np.__version__}")
    size = (args.height, int(round(args.height * 0.8)))
    models = tuple(["oracle", "prior", "ldm", "ldm-frozen", "biovil", "biovil-t"][:args.models]
                   + [f"model{k}" for k in range(6, args.models)])
    print(f"settings: {args.samples} samples x {args.models} models ({', '.join(models)}), images "
          f"{size[1]}x{size[0]} JPEG (2 phrases each), heatmaps saved at {min(max(size), 256)} px")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cxrg-bench-report-"))
    try:
        started = time.perf_counter()
        run = synthetic_run(folder, samples=args.samples, models=models, size=size, resamples=1000)
        print(f"synthetic run made in {time.perf_counter() - started:.1f} s (not timed): {run}")
        started = time.perf_counter()
        report = write_report(run)
        seconds = time.perf_counter() - started
        files, total = folder_size(run / "report_files")
        print(f"report: {seconds:.1f} s for {args.samples * args.models} (sample, model) pairs "
              f"({1000 * seconds / (args.samples * args.models):.1f} ms a pair); "
              f"target < {TARGET_SECONDS:.0f} s: {'met' if seconds < TARGET_SECONDS else 'MISSED'}")
        print(f"written: report.html {report.stat().st_size / 1e6:.2f} MB, report_files/ {files} files "
              f"{total / 1e6:.1f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
