"""Developer sessions: tests, lint, typecheck, perf. `nox -s tests` etc.; CI runs .ci/run instead."""

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


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
