"""Progress of long work, shown wherever the user is looking, on stderr (stdout is for data).

One call for every loop that takes a while::

    with progress("bench", total=len(samples), unit="samples") as bar:
        for sample in samples:
            ...
            bar.advance(1, info="loss 0.51")   # info: optional, shown after the counts

Where it shows:

- on a terminal: a rich bar (transient: it is gone when the work is done);
- in a Jupyter notebook: tqdm's widget (tqdm.auto, with ipywidgets) or its text bar when tqdm is installed
  (transformers brings it), else the plain lines below;
- anywhere else (a pipe, nohup, CI, a log file): plain lines on stderr, one when each further 10 % is done
  and otherwise at most one every 30 s, e.g. ``bench: 120/1000 samples, 2.1 s/sample, ETA 31 min``, and a
  last line when the work ends; work that ends within 2 s prints nothing.

``quiet(True)`` (what ``--quiet`` sets) silences all of it; ``progress(..., enabled=False)`` one bar (the
processes other than rank 0 of a sharded run). The bar itself never raises into the work it reports on.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

PLAIN_EVERY_S = 30.0
"""Off a terminal: at most one line this often, besides one at each tenth of the total."""
PLAIN_AFTER_S = 2.0
"""Off a terminal, work done within this long prints nothing (a log is not filled with lines about it)."""

_quiet = False


def quiet(value: bool = True) -> None:
    """Silence (True) or restore (False) every progress display of this process (`--quiet`)."""
    global _quiet
    _quiet = bool(value)


def format_duration(seconds: float) -> str:
    """12 s, 4.5 min, 2.3 h: the ETA's unit chosen for reading at a glance."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_rate(elapsed: float, done: float, unit: str) -> str:
    """'2.1 s/sample' for slow work, '35.2 samples/s' for fast work."""
    single = unit[:-1] if unit.endswith("s") and len(unit) > 1 else unit
    if done <= 0 or elapsed <= 0:
        return f"? s/{single}"
    per = elapsed / done
    if per >= 1:
        return f"{per:.1f} s/{single}"
    return f"{done / elapsed:.1f} {unit}/s"


class Bar:
    """What `progress` yields: `advance(n, info=)`, `update(done=, total=, info=)`. Subclasses draw."""

    def __init__(self, label: str, total: float | None, unit: str):
        self.label, self.total, self.unit = label, total, unit
        self.done: float = 0
        self.info = ""
        self.started = time.monotonic()

    def advance(self, n: float = 1, info: str | None = None) -> None:
        self.update(done=self.done + n, info=info)

    def update(self, done: float | None = None, total: float | None = None, info: str | None = None) -> None:
        if done is not None:
            self.done = done
        if total is not None:
            self.total = total
        if info is not None:
            self.info = info
        try:
            self._draw()
        except Exception:  # a display problem must never stop the work
            pass

    def line(self) -> str:
        """'bench: 120/1000 samples, 2.1 s/sample, ETA 31 min, loss 0.5'"""
        elapsed = time.monotonic() - self.started
        count = (f"{_n(self.done)}/{_n(self.total)} {self.unit}" if self.total
                 else f"{_n(self.done)} {self.unit}")
        parts = [f"{self.label}: {count}", format_rate(elapsed, self.done, self.unit)]
        if self.total and 0 < self.done < self.total:
            parts.append(f"ETA {format_duration(elapsed / self.done * (self.total - self.done))}")
        elif self.total and self.done >= self.total:
            parts.append(f"done in {format_duration(elapsed)}")
        if self.info:
            parts.append(self.info)
        return ", ".join(parts)

    def _draw(self) -> None:
        pass

    def close(self) -> None:
        pass


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:g}" if value != int(value) else str(int(value))


class PlainBar(Bar):
    """Timed lines for a pipe or a log: at each tenth of the total, else at most every PLAIN_EVERY_S."""

    def __init__(self, label: str, total: float | None, unit: str, stream: TextIO | None = None,
                 every: float = PLAIN_EVERY_S):
        super().__init__(label, total, unit)
        self.stream, self.every = stream, every
        self.last_time = self.started
        self.last_tenth = 0
        self.printed_done: float = 0

    def _draw(self) -> None:
        now = time.monotonic()
        tenth = int(10 * self.done / self.total) if self.total else 0
        if now - self.started < PLAIN_AFTER_S:
            return
        if tenth > self.last_tenth or now - self.last_time >= self.every:
            self._print(now, tenth)

    def _print(self, now: float, tenth: int) -> None:
        print(self.line(), file=self.stream or sys.stderr, flush=True)
        self.last_time, self.last_tenth, self.printed_done = now, max(tenth, self.last_tenth), self.done

    def close(self) -> None:
        now = time.monotonic()
        if self.done and self.done != self.printed_done and now - self.started >= PLAIN_AFTER_S:
            self._print(now, 10)  # the last count shows, unless the work was too quick to mention


class RichBar(Bar):
    """A transient rich bar on the terminal's stderr."""

    def __init__(self, label: str, total: float | None, unit: str, console: Any):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        super().__init__(label, total, unit)
        self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                            TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console,
                            transient=True)
        self.task = self.bar.add_task(label, total=total, info="")
        self.bar.start()

    def _draw(self) -> None:
        self.bar.update(self.task, completed=self.done, total=self.total, info=self.info)

    def close(self) -> None:
        self.bar.stop()


class TqdmBar(Bar):
    """tqdm.auto: a widget in a notebook (what researchers' other tools show there)."""

    def __init__(self, label: str, total: float | None, unit: str):
        try:
            import ipywidgets  # noqa: F401  (tqdm.auto's widget needs it; without, its text bar)
            from tqdm.auto import tqdm
        except ImportError:
            from tqdm.std import tqdm

        super().__init__(label, total, unit)
        self.bar = tqdm(total=total, desc=label, unit=f" {unit}", leave=True, mininterval=0.5,
                        file=sys.stderr)

    def _draw(self) -> None:
        if self.total is not None and self.bar.total != self.total:
            self.bar.total = self.total
        self.bar.n = self.done
        if self.info:
            self.bar.set_postfix_str(self.info, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def in_notebook() -> bool:
    """Running inside a Jupyter kernel (IPython's ZMQ shell), where stderr is not a terminal but a cell."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except Exception:
        return False


def make_bar(label: str, total: float | None = None, unit: str = "items", enabled: bool = True) -> Bar:
    """The bar that fits where stderr goes (see the module docstring); a silent Bar when quiet."""
    if _quiet or not enabled:
        return Bar(label, total, unit)
    if in_notebook():
        try:
            return TqdmBar(label, total, unit)
        except ImportError:
            return PlainBar(label, total, unit)
    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        return RichBar(label, total, unit, console)
    return PlainBar(label, total, unit)


@contextlib.contextmanager
def progress(label: str, total: float | None = None, unit: str = "items", enabled: bool = True
             ) -> Iterator[Bar]:
    """`with progress("tune", total=N, unit="steps") as bar: bar.advance(1, info="loss 0.5")`."""
    bar = make_bar(label, total, unit, enabled)
    try:
        yield bar
    finally:
        with contextlib.suppress(Exception):
            bar.close()
