"""Developer sessions: tests, lint, typecheck, perf, plugins. `nox -s tests` etc.; CI runs .ci/run instead."""

import sys
from pathlib import Path

import nox

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
from env_requirements import environment_requirements  # noqa: E402

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PLUGINS = ("cxrg-biovil", "cxrg-maira2")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    """The tests marked slow (not part of the default run)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy", "cxrg")


@nox.session(python="3.11")
def perf(session: nox.Session) -> None:
    """The performance suite; prints ratios against the reference path and the machine."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/bench_scoring.py", *session.posargs)


@nox.session(python="3.11", venv_backend="venv")
@nox.parametrize("plugin", PLUGINS, ids=[name.removeprefix("cxrg-") for name in PLUGINS])
def plugins(session: nox.Session, plugin: str) -> None:
    """Each first-party plugin in its own environment (.nox/plugins-<id>), then its tests there.

    Two steps, because cxrg pins torch 2.13.0 and BioViL needs torch 2.14.1 + torchvision: first the
    merged requirement list (plugin pins win, see plugins/env_requirements.py), then cxrg and the plugin
    without dependencies, exactly as a user builds it by hand (plugins/README.md).
    """
    folder = Path("plugins") / plugin
    session.install(*environment_requirements(folder))
    session.install("--no-deps", "-e", ".", "-e", str(folder))
    session.chdir(folder)
    session.run("pytest", *session.posargs)
