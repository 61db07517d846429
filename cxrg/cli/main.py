"""The `cxrg` Typer app and its single error path.

A CxrgError prints one line on stderr ("cxrg: error: what (where); hint") and exits with its code; any
other exception prints one line too, with a pointer to CXRG_DEBUG=1, which shows the full traceback.
"""

from __future__ import annotations

import sys

import typer

from cxrg.cli import bench, classify, curate, datasets, ground, lut, models, organism, report, tune, weights
from cxrg.cli import export as export_cli
from cxrg.cli import ldm as ldm_cli
from cxrg.cli import study as study_cli
from cxrg.errors import CxrgError

app = typer.Typer(
    name="cxrg",
    help="Chest X-ray phrase grounding: curate reports, build the anatomical atlas, tune and run the LDM, "
         "benchmark grounding models. Exit codes: 0 done, 1 bad data or a failure at run time, 2 a usage "
         "error (wrong option, unknown model or dataset), 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from cxrg import __version__

        typer.echo(f"cxrg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_version, is_eager=True)) -> None:
    """The options every command shares."""


app.add_typer(models.app, name="models")
app.command("bench")(bench.bench)
app.command("ground")(ground.ground)
app.command("report")(report.report)
app.command("export")(export_cli.export)
app.command("tune")(tune.tune)
app.command("datasets")(datasets.datasets)
app.add_typer(lut.app, name="lut")
weights.app.command("organism")(organism.organism)
app.add_typer(weights.app, name="weights")
app.add_typer(ldm_cli.app, name="ldm")
app.add_typer(study_cli.app, name="study")
app.command("demo-image")(ground.demo_image)
curate.register(app)
classify.register(app)


def _debug() -> bool:
    from cxrg.config import debug

    return debug()


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point. Typer/Click handle usage errors (exit 2); we handle everything else."""
    try:
        app(args=argv, prog_name="cxrg")
    except CxrgError as exc:
        if _debug():
            raise
        from cxrg.runs import Interrupted

        prefix = "cxrg: " if isinstance(exc, Interrupted) else "cxrg: error: "
        print(f"{prefix}{exc.one_line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("cxrg: interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # the disk, not the program: read-only, full, a file where a folder should be
        if _debug():
            raise
        print(f"cxrg: error: {os_error_line(exc)}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if _debug():
            raise
        print(f"cxrg: internal error: {type(exc).__name__}: {exc} (run with CXRG_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)


def os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which file, and what to do."""
    import errno

    what = exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    hints = {errno.ENOSPC: "free some space or choose another --out",
             errno.EROFS: "the file system is read-only; choose another --out",
             errno.EACCES: "no permission; choose another --out or fix the permissions",
             errno.EPERM: "no permission; choose another --out or fix the permissions",
             errno.ENOTDIR: "a file stands where a folder is needed; choose another --out",
             errno.EISDIR: "a folder stands where a file is needed; choose another name",
             errno.EEXIST: "choose another --out", errno.EDQUOT: "disk quota exceeded; free some space"}
    hint = hints.get(exc.errno or 0, "check the path and the disk")
    return f"cannot read or write{' ' + str(where) if where else ''}: {what}; {hint}"
