"""The CLI's promises: light start-up (no torch), one error path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
from cxrg.cli.main import run
try:
    run(sys.argv[1:])
except SystemExit:
    pass
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH", file=sys.stderr)
"""


def probe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize("args", [("--help",), ("models", "list"), ("models", "info", "oracle"),
                                  ("bench", "--help")])
def test_light_commands_do_not_import_torch(args):
    result = probe(*args)
    assert "NO_TORCH" in result.stderr, result.stderr
    assert result.stdout.strip()


def test_help_lists_every_subcommand():
    out = probe("--help").stdout
    for name in ("curate", "lut", "tune", "ground", "bench", "classify", "models"):
        assert name in out


def test_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    args = ["-m", "cxrg", "bench", "--models", "oracle", "--dataset", "ms-cxr",
            "--annotations", str(tmp_path / "missing.csv"), "--images", str(tmp_path)]
    plain = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, CXRG_DEBUG="1"))
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "InputError" in debug.stderr
