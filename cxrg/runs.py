"""Run directories: config, argv, versions, seed and a log, with atomic writes so a crash never leaves a
half-written file behind and a rerun can resume."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import platform
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from cxrg import __version__
from cxrg.errors import CxrgError, UsageError

VERSIONED_PACKAGES = ("numpy", "scipy", "torch", "monai", "transformers", "pydicom", "pillow")
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)
"""One CSV field-size policy for every reader (a report longer than the csv module's default 131,072
characters must not make a manifest that tune or bench cannot read): set when cxrg.runs is imported,
which every CSV reader of cxrg imports."""
csv.field_size_limit(CSV_FIELD_LIMIT)
LOCK_FILE = ".lock"


class Interrupted(CxrgError):
    """The user pressed Ctrl-C: what was finished is kept; the same command resumes (exit 130)."""

    exit_code = 130


# ------------------------------------------------------------------------ a real Ctrl-C vs plugin code

_interrupt = threading.Event()
_guards = 0


@contextlib.contextmanager
def interrupt_guard(terminate: bool = False):
    """While active (on the main thread), a real SIGINT sets a flag before raising KeyboardInterrupt, so
    that a KeyboardInterrupt raised by plugin code (no flag) can be told apart from the user's Ctrl-C.
    `terminate`: SIGTERM too (what torchrun sends the other processes when one of them fails), so that a
    process of a sharded run writes its shard before it ends."""
    global _guards
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM) if terminate else (signal.SIGINT,)
    previous = {signum: signal.getsignal(signum) for signum in signals}

    def handler(signum, frame):  # noqa: ARG001
        _interrupt.set()
        raise KeyboardInterrupt

    if _guards == 0:
        _interrupt.clear()
    for signum in signals:
        signal.signal(signum, handler)
    _guards += 1
    try:
        yield
    finally:
        _guards -= 1
        for signum, before in previous.items():
            signal.signal(signum, before)


def is_contained(exc: BaseException) -> bool:
    """Whether an exception raised by plugin code is that plugin's error (to be recorded) rather than the
    user stopping the command: everything except a KeyboardInterrupt from a real SIGINT (outside any
    guard, a KeyboardInterrupt counts as real) and GeneratorExit (Python's own plumbing)."""
    if isinstance(exc, KeyboardInterrupt):
        return _guards > 0 and not _interrupt.is_set()
    return not isinstance(exc, GeneratorExit)


# ------------------------------------------------------------------------------------- fingerprints

def file_fingerprint(path: Path, content: bool = False) -> str:
    """A file's identity: its content hash (`content=True`), else size and modification time; a folder's is
    that of every file under it. 'missing' when absent."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{child.relative_to(path)}={file_fingerprint(child, content)}\n".encode())
        return digest.hexdigest()[:24]
    if not path.is_file():
        return "missing"
    if content:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:24]
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able value."""
    text = json.dumps(json_safe(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def changed_parts(previous: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """The names whose fingerprints differ (or are new or gone)."""
    return sorted(k for k in set(previous) | set(now) if previous.get(k) != now.get(k))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder", hint="choose a file name")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def headless_plots() -> None:
    """Draw figures for files without a window (matplotlib's Agg backend), except inside a Jupyter kernel,
    whose own inline backend also writes files and must stay in place for the notebook's own plots."""
    if "ipykernel" in sys.modules:
        return
    import matplotlib

    matplotlib.use("Agg")


def save_figure(fig: Any, path: Path, **savefig: Any) -> None:
    """Write a matplotlib figure as a PNG atomically (no half-written picture after a crash) and free it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def say(text: str) -> None:
    """A status or warning line on stderr (data go to stdout or files), flushed, never wrapped."""
    print(text, file=sys.stderr, flush=True)


def format_number(value: float | None) -> str:
    """A number for a CSV cell: shortest round-trip text; empty for None or NaN (an undefined value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value))


def json_safe(obj: Any) -> Any:
    """`obj` with NaN/inf turned into None (strict JSON has no NaN), numpy scalars into Python numbers, and
    paths into strings, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# Spreadsheet formula injection (OWASP "CSV injection"): a cell that begins with one of these characters
# may be run as a formula by Excel, LibreOffice or Google Sheets. Text cells that do are written with a
# single quote in front (shown as text, never run); a cell that already begins with quotes before such a
# character gets one more, so `csv_cell_raw` gives back exactly what was written. Numbers stay numbers:
# a number ("-0.07", "-1e-05", or a Python/numpy number) is never prefixed, since a spreadsheet reads it as
# the number it is. The raw value stays in the JSON files.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NEUTRALISED = re.compile(r"'*[=+\-@\t\r]")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """`value` as written to a CSV cell: text that a spreadsheet would run as a formula gets a leading '."""
    if isinstance(value, str) and _NEUTRALISED.match(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_cell_raw(value: str) -> str:
    """The value `csv_cell` was given, from the cell it wrote (the inverse: one leading ' dropped)."""
    if value.startswith("'") and _NEUTRALISED.match(value[1:]) and not _NUMBER.fullmatch(value[1:]):
        return value[1:]
    return value


def raw_row(row: Mapping[Any, Any]) -> dict[Any, Any]:
    """A row that csv.DictReader read from a file cxrg wrote, every cell back to its raw value."""
    return {key: csv_cell_raw(value) if isinstance(value, str) else value for key, value in row.items()}


def read_csv_dicts(handle: Any) -> Iterator[dict[Any, Any]]:
    """csv.DictReader over `handle`, every cell back to its raw value (see `csv_cell`)."""
    return map(raw_row, csv.DictReader(handle))


def atomic_write_csv(path: Path, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """The one CSV writer: atomic, and safe to open in a spreadsheet (`csv_cell`)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: csv_cell(row.get(key, "")) for key in fieldnames})
    atomic_write_text(path, buffer.getvalue())


def environment() -> dict[str, Any]:
    """Versions of Python, the platform and the main packages, read from metadata (nothing imported)."""
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cxrg": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "packages": versions}


class RunDir:
    """A folder holding one command's outputs, its config.json and log; reopening it resumes the run."""

    def __init__(self, path: Path, command: str, config: Mapping[str, Any],
                 resume_keys: Sequence[str] = (), lock: bool = False) -> None:
        self.path = Path(path)
        self.command = command
        self.config = dict(config)
        self._lock: RunLock | None = None
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"run directory {self.path} exists and is not a folder",
                             hint="choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        if lock:
            self._lock = RunLock(self.path)
        try:
            self.resumed = (self.path / "config.json").exists()
            self.previous: dict[str, Any] = {}
            if self.resumed:
                self.previous = self._previous()
                self._check_compatible(resume_keys)
        except BaseException:
            self.release()
            raise
        atomic_write_json(self.path / "config.json", {
            "command": command, "argv": sys.argv, "config": self.config,
            "environment": environment(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        self.logger = self._make_logger()

    def _previous(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _check_compatible(self, keys: Sequence[str]) -> None:
        previous = self.previous.get("config", {})
        for key in keys:
            if key in previous and previous[key] != self.config.get(key):
                raise UsageError(
                    f"{self.path} holds a run with a different {key} ({previous[key]!r}, now "
                    f"{self.config.get(key)!r})",
                    hint="use a new --out folder, or the same settings to resume")

    def _make_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"cxrg.run.{self.path.resolve()}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if not logger.handlers:
            handler = logging.FileHandler(self.path / "log.txt", encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
        return logger

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
        self.release()

    def release(self) -> None:
        """Let another run write to this folder (the OS also releases the lock when the process dies)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def file(self, name: str) -> Path:
        return self.path / name


INCOMPLETE = "INCOMPLETE"
"""Marker a command writes in its run folder before its outputs and removes after the last one: readers of
those outputs (tune's manifest, bench's annotations) refuse a folder that still has it."""


def mark_incomplete(folder: Path, command: str) -> None:
    atomic_write_text(Path(folder) / INCOMPLETE,
                      f"`cxrg {command}` is writing this folder (or was stopped before it finished); its "
                      "outputs may mix two runs. Rerun the command to complete it.\n")


def mark_complete(folder: Path) -> None:
    (Path(folder) / INCOMPLETE).unlink(missing_ok=True)


def check_complete(path: Path) -> None:
    """Refuse a file whose folder is a run that did not finish (see INCOMPLETE)."""
    from cxrg.errors import InputError

    if (Path(path).parent / INCOMPLETE).exists():
        raise InputError("this file belongs to a run that did not finish (its outputs may mix two runs)",
                         where=str(path), hint="rerun the command that wrote it (e.g. `cxrg curate`)")


class RunLock:
    """One writer per run folder: an exclusive OS lock on RUN/.lock (fcntl.flock on POSIX, msvcrt on
    Windows), taken without waiting. The kernel drops it when the holding process ends, however it ends,
    so a killed run never leaves a stale lock behind; the pid written in the file is for the message."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.handle = open(self.path, "a+")  # noqa: SIM115 (held for the run)
        try:
            _try_lock(self.handle)
        except OSError:
            self.handle.seek(0)
            holder = self.handle.read().strip()
            self.handle.close()
            raise UsageError(f"another cxrg run is writing to {folder}"
                             + (f" (process {holder})" if holder else ""),
                             hint="wait for it to finish, or choose another --out") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(str(os.getpid()))
        self.handle.flush()

    def release(self) -> None:
        if not self.handle.closed:
            with contextlib.suppress(OSError):
                _unlock(self.handle)
            self.handle.close()


def _try_lock(handle: Any) -> None:
    if os.name == "nt":  # pragma: no cover (Windows)
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(handle: Any) -> None:
    if os.name == "nt":  # pragma: no cover (Windows)
        import msvcrt

        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
