"""Write RUN_DIR/report.html and its pictures (RUN_DIR/report_files/, or embedded with `embed=True`).

The pictures are made into a fresh folder that replaces report_files/ in one rename once all are written,
and report.html is written atomically last, so an interrupted report never mixes two runs' pictures; the
per-file fsync of cxrg.runs.atomic_write_bytes is not paid for each of thousands of small files.
"""

from __future__ import annotations

import base64
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrg.report.run import ReportSample, RunData, metric_value, read_run
from cxrg.runs import atomic_write_text

FILES = "report_files"
REPORT = "report.html"
MIME = {".png": "image/png", ".jpg": "image/jpeg"}


class Assets:
    """Pictures for the page: files under a staging folder (published by `publish`), or data: URLs."""

    def __init__(self, run_path: Path, embed: bool) -> None:
        self.final = run_path / FILES
        self.embed = embed
        self.staging = run_path / f".{FILES}.partial"
        self.count = 0
        self.bytes = 0
        if not embed:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging.mkdir(parents=True)

    def add(self, name: str, data: bytes) -> str:
        self.count += 1
        self.bytes += len(data)
        if self.embed:
            return f"data:{MIME[Path(name).suffix]};base64,{base64.b64encode(data).decode('ascii')}"
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return f"{FILES}/{name}"

    def publish(self) -> None:
        """Replace report_files/ with the staged folder (or remove it when everything is embedded)."""
        old = self.final.with_name(f".{FILES}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.final.exists():
            self.final.rename(old)
        if not self.embed:
            self.staging.rename(self.final)
        shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def write_report(run_dir: Path, *, annotations: Path | None = None, images: Path | None = None,
                 embed: bool = False, progress: Callable[[int, int], Any] | None = None) -> Path:
    """Write RUN_DIR/report.html for a bench run folder and return its path.

    `annotations`/`images` override the dataset paths in config.json (a moved run); `embed` puts every
    picture into the HTML as a data: URL (one file to send; large for big runs); `progress(done, total)`
    is called as samples are drawn.
    """
    from cxrg.report.page import render

    started = time.perf_counter()
    run = read_run(Path(run_dir), annotations, images)
    assets = Assets(run.path, embed)
    try:
        data = _page_data(run, assets, progress)
        chart = _chart(run, assets)
        html = render(run, data, chart, seconds=time.perf_counter() - started)
        assets.publish()
    except BaseException:
        assets.discard()
        raise
    target = run.path / REPORT
    atomic_write_text(target, html)
    run_log = run.path / "log.txt"
    if run_log.is_file():
        with run_log.open("a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} INFO report: {target} ({len(run.samples)} "
                         f"samples, {len(run.models)} models, {assets.count} pictures)\n")
    return target


def _chart(run: RunData, assets: Assets) -> str | None:
    """The run's results.png (the CI chart of `cxrg bench`), drawn again when the run has none."""
    source = run.path / "results.png"
    if source.is_file():
        return assets.add("results.png", source.read_bytes())
    if run.summary is None:
        return None
    import tempfile

    from cxrg.bench.reports import chart

    with tempfile.TemporaryDirectory(dir=run.path, prefix=".report-chart.") as folder:
        drawn = Path(folder) / "results.png"
        chart(run.summary, drawn)
        return assets.add("results.png", drawn.read_bytes()) if drawn.is_file() else None


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _page_data(run: RunData, assets: Assets, progress: Callable[[int, int], Any] | None) -> dict[str, Any]:
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.errors import CxrgError
    from cxrg.report.imaging import heat_pngs, radiograph_jpegs

    store = HeatmapStore(run.path)
    metrics = [m for m in ("cnr", "miou")
               if any(not math.isnan(metric_value(row, m)) for row in run.rows.values())]
    image_index: dict[Path, int] = {}
    pictures: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    total = len(run.samples)
    for k, sample in enumerate(run.samples):
        image = -1
        if sample.image_path is not None:
            if sample.image_path not in image_index:
                image_index[sample.image_path] = len(pictures)
                pictures.append(_picture(sample, len(pictures), assets, radiograph_jpegs))
            image = image_index[sample.image_path]
        per_model = []
        for j, model in enumerate(run.models):
            status, reason = run.status(model, sample.sample_id)
            row = run.rows.get((model, sample.sample_id))
            entry: dict[str, Any] = {"s": status, "r": reason,
                                     **{m: _number(metric_value(row, m)) for m in metrics}}
            if status == "ok":
                try:
                    heat, _ = store.load(model, sample.sample_id)
                    overlay, mask, threshold = heat_pngs(heat)
                    entry["h"] = assets.add(f"heat/{j}/{k}.png", overlay)
                    entry["k"] = assets.add(f"mask/{j}/{k}.png", mask)
                    entry["t"] = _number(threshold)
                except FileNotFoundError:
                    entry["r"] = "no saved heatmap (the run was made with --no-save-heatmaps or before " \
                                 "heatmaps were kept)"
                except (OSError, ValueError, KeyError, CxrgError) as exc:
                    entry["r"] = f"saved heatmap unreadable: {exc}"
            per_model.append(entry)
        samples.append({"id": sample.sample_id, "cat": sample.category, "prompt": sample.prompt,
                        "phrase": sample.phrase if sample.phrase != sample.prompt else "",
                        "img": image, "err": sample.error, "boxes": _boxes(sample), "m": per_model})
        if progress is not None:
            progress(k + 1, total)
    categories = sorted({s.category for s in run.samples})
    return {"models": run.models, "metrics": metrics, "categories": categories, "images": pictures,
            "samples": samples}


def _picture(sample: ReportSample, index: int, assets: Assets, make) -> dict[str, Any]:
    from cxrg.errors import CxrgError

    try:
        thumb, large, (height, width) = make(sample.image_path)
    except CxrgError as exc:
        return {"err": exc.one_line(), "w": None, "h": None}
    except Exception as exc:  # one unreadable picture must not stop the report
        return {"err": f"{type(exc).__name__}: {exc}", "w": None, "h": None}
    return {"t": assets.add(f"img/{index}.t.jpg", thumb), "l": assets.add(f"img/{index}.jpg", large),
            "w": width, "h": height}


def _boxes(sample: ReportSample) -> list[list[float]]:
    """xywh in original pixels (the MS-CXR convention), rounded for the page."""
    return [[round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]
            for x0, y0, x1, y1 in sample.boxes]
