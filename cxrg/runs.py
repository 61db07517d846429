"""Run directories: config, argv, versions, seed and a log, with atomic writes so a crash never leaves a
half-written file behind and a rerun can resume."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from cxrg import __version__
from cxrg.errors import UsageError

VERSIONED_PACKAGES = ("numpy", "scipy", "torch", "monai", "transformers", "pydicom", "pillow")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def atomic_write_csv(path: Path, fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in fieldnames})
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
                 resume_keys: Sequence[str] = ()) -> None:
        self.path = Path(path)
        self.command = command
        self.config = dict(config)
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"run directory {self.path} exists and is not a folder",
                             hint="choose another --out")
        self.resumed = (self.path / "config.json").exists()
        if self.resumed:
            self._check_compatible(resume_keys)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / "config.json", {
            "command": command, "argv": sys.argv, "config": self.config,
            "environment": environment(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        self.logger = self._make_logger()

    def _check_compatible(self, keys: Sequence[str]) -> None:
        previous = json.loads((self.path / "config.json").read_text()).get("config", {})
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

    def file(self, name: str) -> Path:
        return self.path / name
