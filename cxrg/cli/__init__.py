"""The `cxrg` command line: one thin module per subcommand; heavy imports happen inside the commands."""

import sys


def say(text: str) -> None:
    """A status or warning line on stderr (data goes to stdout or files), never wrapped."""
    print(text, file=sys.stderr, flush=True)


OPTION_HELP = "A model option KEY=VALUE (repeatable; MODEL.KEY=VALUE for one model); see `cxrg models info`."
