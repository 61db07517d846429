"""Progress off a terminal: timed plain lines on stderr; --quiet silences them; a real pipe shows them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cxrg import progress as progress_module
from cxrg.progress import PlainBar, format_duration, format_rate, make_bar, progress


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_the_line_of_the_issue(clock):
    """120 of 1000 samples in 252 s: 2.1 s a sample, 880 left -> 1,848 s = 31 min."""
    stream = io.StringIO()
    bar = PlainBar("bench", 1000, "samples", stream)
    clock.now += 252
    bar.update(done=120)
    assert stream.getvalue() == "bench: 120/1000 samples, 2.1 s/sample, ETA 31 min\n"


def test_one_line_per_tenth_when_fast(clock):
    stream = io.StringIO()
    bar = PlainBar("curate", 1000, "reports", stream)
    clock.now += 3  # past the quiet start
    for _ in range(1000):
        clock.now += 0.01
        bar.advance(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    expected = [f"curate: {k}/1000 reports" for k in range(100, 1001, 100)]
    assert [line.split(",")[0] for line in lines] == expected
    assert lines[-1].endswith("done in 13 s")
    assert "reports/s" in lines[0]  # fast work reads as a rate per second


def test_at_most_every_30_s_between_tenths(clock):
    stream = io.StringIO()
    bar = PlainBar("bench", 1000, "samples", stream)
    for _ in range(30):  # 30 samples, 10 s each: 3 % of the total, 300 s
        clock.now += 10
        bar.advance(1)
    times = [int(line.split("/")[0].split()[-1]) for line in stream.getvalue().splitlines()]
    assert times == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]  # one line per 30 s, the tenths not reached


def test_unknown_total_and_info(clock):
    stream = io.StringIO()
    bar = PlainBar("tune", None, "steps", stream)
    clock.now += 31
    bar.advance(1, info="loss 0.5")
    assert stream.getvalue() == "tune: 1 steps, 31.0 s/step, loss 0.5\n"


def test_quick_work_prints_nothing(clock):
    stream = io.StringIO()
    bar = PlainBar("ground", 4, "images", stream)
    for _ in range(4):
        clock.now += 0.1
        bar.advance(1)
    bar.close()
    assert stream.getvalue() == ""


def test_quiet_and_disabled_bars_are_silent(capsys):
    progress_module.quiet(True)
    try:
        with progress("bench", total=2, unit="samples") as bar:
            assert type(bar) is progress_module.Bar
            bar.advance(2)
    finally:
        progress_module.quiet(False)
    assert type(make_bar("x", 1, enabled=False)) is progress_module.Bar
    assert capsys.readouterr().err == ""


def test_formats():
    assert format_duration(12) == "12 s" and format_duration(600) == "10 min"
    assert format_duration(4 * 3600) == "4.0 h"
    assert format_rate(10, 4, "samples") == "2.5 s/sample"
    assert format_rate(1, 20, "images") == "20.0 images/s"


def _bench_command(ms_cxr, out: Path, *extra: str) -> list[str]:
    annotations, images = ms_cxr
    return [str(Path(sys.executable).parent / "cxrg"), "bench", "--models", "oracle,prior", "--dataset",
            "ms-cxr", "--annotations", str(annotations), "--images", str(images), "--resamples", "100",
            "--no-report", "--out", str(out), *extra]


def test_bench_under_a_pipe_prints_progress_lines(ms_cxr, tmp_path):
    """`cxrg bench ... 2>&1 | cat`: stderr is a pipe, not a terminal. Lines start once work has run 2 s;
    this small bench is quicker, so a sitecustomize sets that start to 0 and the real command prints what it
    prints on a long run."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import cxrg.progress as p\np.PLAIN_AFTER_S = 0.0\n")
    env = {**os.environ, "PYTHONPATH": str(site), "CXRG_LOAD_PLUGINS": ""}
    done = subprocess.run(_bench_command(ms_cxr, tmp_path / "run"), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("bench: ")]
    assert lines, done.stderr
    pattern = r"bench: (\d+)/(\d+) samples, [\d.]+ (s/sample|samples/s)(, ETA .*|, done in .*)"
    assert all(re.fullmatch(pattern, line) for line in lines), lines
    last = re.fullmatch(pattern, lines[-1])
    assert last and last.group(1) == last.group(2) and "done in" in lines[-1]
    quiet = subprocess.run(_bench_command(ms_cxr, tmp_path / "run2", "--quiet"), capture_output=True,
                           text=True, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("bench: ")]
    assert "results in" in quiet.stderr  # status lines still print
