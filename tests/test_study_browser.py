"""The rating page in a real browser: headless system Chromium driven by Playwright (never downloaded).

A scripted rater rates 20 cases with keys and clicks, reloads the page half-way (and resumes), changes a
rating; a second rater with a hostile name rates the same cases; then the database holds exactly the
expected ratings and `study analyse` gives scipy's rho and the hand-worked kappa.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from test_study import MODELS, PAIRS, build_study

pytestmark = pytest.mark.browser

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no system Chromium (apt-get install chromium); the browser test needs one")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def served_study(ms_cxr, tmp_path):
    from cxrg.study.server import make_server

    study, _ = build_study(ms_cxr, tmp_path)
    server = make_server(study, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield study, f"http://127.0.0.1:{server.port}/"
    server.shutdown()
    server.server_close()


def order_of(study: Path, name: str) -> list[int]:
    con = sqlite3.connect(study / "study.sqlite")
    row = con.execute("SELECT item_order FROM raters WHERE name = ?", (name,)).fetchone()
    con.close()
    return json.loads(row[0])


def wait_ready(page) -> None:
    """The page has loaded the study and is waiting for the rater (it marks body[data-busy] = '0')."""
    page.wait_for_function("() => document.body.dataset.busy === '0'")


def sign_in(page, name: str) -> None:
    wait_ready(page)
    page.fill("#name", name)
    page.click("#start")


def expect_position(page, position: int) -> None:
    page.wait_for_function("(want) => document.getElementById('progress').textContent === want",
                           arg=f"{position} of {2 * PAIRS}")
    page.wait_for_function("() => document.body.dataset.busy === '0' && "
                           "document.getElementById('xray').complete")


def test_two_raters_rate_in_the_browser(browser, served_study):
    from cxrg_test_support import run_cli
    from scipy.stats import spearmanr

    study, url = served_study
    total = 2 * PAIRS
    # the design: R1 scores item k as 1 + (k - 1) % 5; R2 agrees except 4 -> 5 (kappa = 22/23, worked out in
    # test_study.test_weighted_kappa_against_a_hand_worked_value)
    design = {k: 1 + (k - 1) % 5 for k in range(1, total + 1)}
    second = {k: 5 if s == 4 else s for k, s in design.items()}

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    sign_in(page, "Ada")
    expect_position(page, 1)
    order = order_of(study, "Ada")
    assert sorted(order) == list(range(1, total + 1))
    assert page.text_content("#who") == "Rater: Ada"
    # blinded: no model name anywhere on the page
    assert not any(model in page.content() for model in MODELS)
    # overlay controls
    page.fill("#opacity", "80")
    page.dispatch_event("#opacity", "input")
    assert page.eval_on_selector("#overlay", "e => e.style.opacity") == "0.8"
    page.keyboard.press("h")
    assert page.eval_on_selector("#overlay", "e => e.style.visibility") == "hidden"
    page.click("#show")
    assert page.eval_on_selector("#overlay", "e => e.style.visibility") == "visible"
    height = page.eval_on_selector("#stack", "e => e.getBoundingClientRect().height")
    page.click("#zoom-in")
    assert page.eval_on_selector("#stack", "e => e.getBoundingClientRect().height") > 1.4 * height
    page.keyboard.press("0")
    assert page.text_content("#zoom-level") == "100%"

    wrong_at = 2  # the rater first gives a wrong score here, and corrects it at the end
    for position in range(total):
        if position == 10:  # reload mid-way: the page resumes where the rater stopped
            page.reload()
            wait_ready(page)
            assert page.input_value("#name") == "Ada"  # remembered by the browser
            page.click("#start")
            expect_position(page, 11)
        if position == 5:  # skip forward and come back: nothing is recorded
            page.keyboard.press("ArrowRight")
            expect_position(page, 7)
            page.click("#back")
            expect_position(page, 6)
        score = design[order[position]]
        if position == wrong_at:
            score = 1 if score != 1 else 2
        if position % 2:
            page.click(f".criterion[data-score='{score}']")
        else:
            page.keyboard.press(str(score))
        if position + 1 < total:
            expect_position(page, position + 2)
    page.wait_for_selector("#done", state="visible")
    assert page.text_content("#done-text") == f"You have rated {total} of {total} cases."

    # change the earlier rating: back to it, the current score is shown, press the intended one
    page.click("#done-back")
    for position in range(total - 1, wrong_at - 1, -1):
        expect_position(page, position + 1)
        if position > wrong_at:
            page.keyboard.press("ArrowLeft")
    chosen = page.get_attribute(".criterion.chosen", "data-score")
    assert chosen == str(1 if design[order[wrong_at]] != 1 else 2)
    page.keyboard.press(str(design[order[wrong_at]]))
    expect_position(page, wrong_at + 2)
    page.keyboard.press("ArrowLeft")
    expect_position(page, wrong_at + 1)
    assert page.get_attribute(".criterion.chosen", "data-score") == str(design[order[wrong_at]])
    assert "changed 1 time(s)" in page.text_content("#status")
    page.close()

    # a second rater, whose name is HTML, rates the same cases (fresh browser context: nothing remembered)
    hostile = "<img src=x onerror=window.__pwned=1><script>window.__pwned=1</script>Bob"
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    wait_ready(page)
    assert page.input_value("#name") == ""
    sign_in(page, hostile)
    expect_position(page, 1)
    assert page.text_content("#who") == "Rater: " + hostile
    assert page.evaluate("() => window.__pwned") is None
    assert page.query_selector("header img, header script") is None
    order2 = order_of(study, hostile)
    assert sorted(order2) == sorted(order) and order2 != order  # own seeded order
    for position in range(total):
        page.keyboard.press(str(second[order2[position]]))
        if position + 1 < total:
            expect_position(page, position + 2)
    page.wait_for_selector("#done", state="visible")
    assert page.evaluate("() => window.__pwned") is None
    context.close()
    assert errors == []

    con = sqlite3.connect(study / "study.sqlite")
    current = {(name, item): score for name, item, score in con.execute(
        "SELECT raters.name, c.item_id, c.score FROM current_ratings c "
        "JOIN raters ON raters.id = c.rater_id")}
    assert current == {**{("Ada", k): s for k, s in design.items()},
                       **{(hostile, k): s for k, s in second.items()}}
    history = con.execute("SELECT COUNT(*) FROM ratings r JOIN raters ON raters.id = r.rater_id "
                          "WHERE raters.name = 'Ada' AND r.item_id = ?", (order[wrong_at],)).fetchone()[0]
    assert history == 2
    assert con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 2 * total + 1
    items = {k: (name, cnr) for k, name, cnr in con.execute(
        "SELECT i.id, m.name, i.cnr FROM items i JOIN models m ON m.id = i.model_id")}
    con.close()

    assert run_cli("study", "analyse", str(study), "--resamples", "200") == 0
    summary = json.loads((study / "analysis" / "summary.json").read_text())
    oracle = sorted(k for k, (name, _) in items.items() if name == "oracle")
    expected = spearmanr([items[k][1] for k in oracle], [design[k] for k in oracle])
    assert summary["correlations"]["Ada"]["oracle"]["cnr"]["rho"] == pytest.approx(expected.statistic)
    assert summary["correlations"]["Ada"]["oracle"]["cnr"]["p"] == pytest.approx(expected.pvalue)
    assert summary["agreement"]["kappa"][f"{hostile} vs Ada"]["value"] == pytest.approx(22 / 23)
