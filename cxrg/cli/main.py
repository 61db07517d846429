"""The `cxrg` Typer app and its single error path.

A CxrgError prints one line on stderr ("cxrg: error: what (where); hint") and exits with its code; any
other exception prints one line too, with a pointer to CXRG_DEBUG=1, which shows the full traceback.
"""

from __future__ import annotations

import sys

import typer

from cxrg.cli import bench, classify, curate, datasets, ground, lut, models, report, tune, weights
from cxrg.cli import ldm as ldm_cli
from cxrg.cli import study as study_cli
from cxrg.errors import CxrgError

app = typer.Typer(
    name="cxrg",
    help="Chest X-ray phrase grounding: curate reports, build the anatomical atlas, tune and run the LDM, "
         "benchmark grounding models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(models.app, name="models")
app.command("bench")(bench.bench)
app.command("ground")(ground.ground)
app.command("report")(report.report)
app.command("tune")(tune.tune)
app.command("datasets")(datasets.datasets)
app.add_typer(lut.app, name="lut")
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
        print(f"cxrg: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("cxrg: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if _debug():
            raise
        print(f"cxrg: internal error: {type(exc).__name__}: {exc} (run with CXRG_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)
