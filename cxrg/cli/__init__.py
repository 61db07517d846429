"""The `cxrg` command line: one thin module per subcommand; heavy imports happen inside the commands."""

from typing import Annotated

import typer

from cxrg.runs import say  # noqa: F401  (the commands' status lines, re-exported)

QUIET = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display (status lines and results "
                                     "still print).")]

OPTION_HELP = "A model option KEY=VALUE (repeatable; MODEL.KEY=VALUE for one model); see `cxrg models info`."
