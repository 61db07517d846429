"""The bench report in a real browser: headless Chromium from the system packages, driven by Playwright.

The page is opened from disk (file://), as a researcher would open it. Skipped, with the reason, when no
Chromium is installed (`apt-get install chromium`; .ci/run installs it). Playwright never downloads a
browser here: it is pointed at the system one. Screenshots are kept under pytest's tmp folder; their
paths are printed (pytest -s, or -rA) and `CXRG_ARTEFACTS=DIR` copies them there too.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import run_cli
from PIL import Image

from cxrg.report import write_report
from cxrg.report.synthetic import synthetic_run

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CXRG_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium installed (apt-get install chromium, or set CXRG_CHROMIUM to its path)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install "
                                   "-e '.[dev]')")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A page with every console error, page error and failed request collected."""

    def __init__(self, browser, report: Path, height: int = 1000) -> None:
        self.problems: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": height})
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(report.resolve().as_uri())
        self.page.wait_for_selector("body[data-ready='1']")

    def rows(self) -> list[str]:
        return self.page.eval_on_selector_all("#gallery-body tr", "rows => rows.map(r => r.dataset.id)")

    def column(self, model: str, metric: str) -> list[float | None]:
        values = self.page.eval_on_selector_all(
            f"#gallery-body td.model[data-model='{model}']", f"cells => cells.map(c => c.dataset.{metric})")
        return [float(v) if v else None for v in values]

    def images_loaded(self, selector: str) -> tuple[int, int]:
        """(images under `selector`, how many of them decoded with a size)."""
        self.page.wait_for_function(
            f"Array.from(document.querySelectorAll(\"{selector} img\")).every(i => i.complete)",
            timeout=10_000)
        return self.page.eval_on_selector_all(
            f"{selector} img", "imgs => [imgs.length, imgs.filter(i => i.naturalWidth > 0).length]")



@contextmanager
def opened(browser, report: Path, height: int = 1000) -> Iterator[Page]:
    """The report open in a new page; on leaving, no console error, page error or failed request."""
    page = Page(browser, report, height)
    try:
        yield page
        assert not page.problems, page.problems
    finally:
        page.page.close()


def keep(png: bytes, name: str, folder: Path) -> Path:
    """Keep a screenshot as an artefact; assert it is not blank (grey-level spread across the picture)."""
    path = folder / name
    path.write_bytes(png)
    with Image.open(io.BytesIO(png)) as im:
        grey = np.asarray(im.convert("L"), dtype=np.float32)
    assert grey.std() > 20, f"screenshot {path} looks blank (grey std {grey.std():.1f})"
    if os.environ.get("CXRG_ARTEFACTS"):
        target = Path(os.environ["CXRG_ARTEFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    print(f"screenshot kept: {path}")
    return path


@pytest.fixture
def report(ms_cxr, tmp_path) -> Path:
    """The real commands on the MS-CXR-format test data: `cxrg bench --models oracle,prior` then
    `cxrg report`, with one phrase that is markup (it must show as text)."""
    annotations, images = ms_cxr
    with annotations.open("a", newline="") as handle:
        csv.writer(handle).writerow(["d3", "Pneumonia", XSS, "files/p10/p10000032/s50414267/d3.jpg",
                                     10, 10, 20, 20, 100, 100])
    run = tmp_path / "run"
    assert run_cli("bench", "--models", "oracle,prior", "--dataset", "ms-cxr", "--annotations",
                   str(annotations), "--images", str(images), "--out", str(run), "--resamples", "200",
                   "--exact-prompt") == 0  # prompts as written: the expected failures assume them
    assert run_cli("report", str(run)) == 0
    return run / "report.html"


def test_opens_from_disk_without_errors_and_draws_every_picture(browser, report):
    with opened(browser, report, height=4000) as page:  # tall: every lazy picture is in view
        assert page.rows() == ["d1:0", "d1:1", "d2:0", "d3:0", "d4:0", "d5:0", "d6:0", "d7:0", "d3:1"]
        count, drawn = page.images_loaded("#gallery-body")
        assert count == 9 + 9 * 2 + 2 * 2 and drawn == count  # radiograph; each overlay: radiograph + heat
        boxes = page.page.eval_on_selector_all("#gallery-body tr[data-id='d2:0'] td:nth-child(2) rect",
                                               "rs => rs.map(r => r.getAttribute('x'))")
        assert boxes == ["10", "60"]
        assert page.page.inner_text("#summary-table").count("oracle") == 2


def test_markup_in_a_phrase_shows_as_text(browser, report):
    with opened(browser, report) as page:
        prompts = page.page.eval_on_selector_all("#gallery-body td.info .prompt",
                                                 "ps => ps.map(p => p.textContent)")
        assert XSS in prompts
        assert page.page.evaluate("window.__xss") is None and not page.dialogs


def test_sort_by_metric(browser, report):
    with opened(browser, report) as page:
        page.page.select_option("#sort", "v:miou:0")  # mIoU of oracle
        assert page.page.input_value("#dir") == "desc"
        values = page.column("oracle", "miou")
        assert len(values) == 9 and values == sorted(values, reverse=True)
        page.page.select_option("#dir", "asc")
        assert page.column("oracle", "miou") == sorted(values)
        page.page.select_option("#sort", "v:cnr:1")  # CNR of prior: the failed samples (no value) go last
        prior = page.column("prior", "cnr")
        assert prior[:2] == sorted(prior[:2], reverse=True) and prior[2:] == [None] * 7
        page.page.select_option("#sort", "d:miou")  # difference A - B: defined where both scored
        oracle, prior = page.column("oracle", "miou"), page.column("prior", "miou")
        differences = [a - b for a, b in zip(oracle[:2], prior[:2], strict=True)]
        assert sorted(page.rows()[:2]) == ["d4:0", "d6:0"]
        assert differences == sorted(differences, reverse=True)
        assert prior[2:] == [None] * 7


def test_filter_to_one_class_and_by_failures(browser, report):
    with opened(browser, report) as page:
        page.page.select_option("#filter-class", "Pneumothorax")
        assert page.rows() == ["d5:0", "d6:0"]
        assert page.page.get_attribute("#count", "data-count") == "2"
        categories = page.page.eval_on_selector_all("#gallery-body tr",
                                                    "rs => rs.map(r => r.dataset.category)")
        assert categories == ["Pneumothorax"] * 2
        page.page.select_option("#filter-class", "")
        page.page.select_option("#filter-status", "failed:1")  # failed or skipped by prior
        assert len(page.rows()) == 7
        reasons = page.page.eval_on_selector_all("#gallery-body td.model[data-model='prior'] .fail",
                                                 "ds => ds.map(d => d.textContent)")
        assert len(reasons) == 7 and all(r.startswith("failed: ") for r in reasons)
        page.page.uncheck("#model-toggles input[data-model='prior']")  # filter by model: hide its column
        assert page.page.eval_on_selector_all("#gallery-body td.model", "cs => cs.length") == 7


def test_open_one_sample_large_and_screenshots(browser, report, tmp_path):
    with opened(browser, report, height=1100) as page:
        keep(page.page.screenshot(full_page=False), "report-top.png", tmp_path)
        page.page.click("#gallery-body tr[data-id='d4:0']")
        page.page.wait_for_selector("#viewer:not([hidden])")
        assert page.page.inner_text("#viewer-title") == "d4:0 \u00b7 Pleural Effusion"
        count, drawn = page.images_loaded("#viewer-body")
        assert count == 1 + 2 * 3 and drawn == count  # radiograph; per model: radiograph + heat, Otsu mask
        masks = page.page.eval_on_selector_all("#viewer-body img[alt^='Otsu mask']", "is => is.length")
        assert masks == 2
        keep(page.page.screenshot(), "report-sample.png", tmp_path)
        page.page.keyboard.press("ArrowRight")
        assert page.page.inner_text("#viewer-title").startswith("d5:0")
        page.page.keyboard.press("Escape")
        assert page.page.is_hidden("#viewer")
        page.page.click("#strip rect >> nth=0")  # "where does A beat B": a bar opens its sample
        assert page.page.is_visible("#viewer")


def test_paging_through_many_samples(browser, tmp_path):
    run = synthetic_run(tmp_path / "syn", samples=60, models=("oracle", "prior", "m3", "m4"))
    with opened(browser, write_report(run)) as page:
        first = page.rows()
        assert len(first) == 25 and page.page.inner_text("#page-info") == "page 1 of 3"
        page.page.click("#next")
        second = page.rows()
        assert len(second) == 25 and not set(first) & set(second)
        page.page.click("#next")
        assert len(page.rows()) == 10 and page.page.is_disabled("#next")
        page.page.select_option("#page-size", "10")
        assert page.page.inner_text("#page-info") == "page 1 of 6" and len(page.rows()) == 10
        assert page.page.eval_on_selector_all("#gallery-body img",
                                              "is => is.every(i => i.loading === 'lazy')")
