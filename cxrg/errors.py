"""One error type for everything a user can get wrong.

A CxrgError carries what went wrong, where (file, row, key) and what to do about it. The CLI prints it as one
line on stderr and exits with its code; the traceback is shown only when CXRG_DEBUG=1.
"""

from __future__ import annotations


class CxrgError(Exception):
    """A problem the user can fix: bad input, a missing file, a wrong option."""

    exit_code: int = 1

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None,
                 exit_code: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def one_line(self) -> str:
        """The message as a single line: 'what (where); hint'."""
        text = self.what
        if self.where:
            text += f" ({self.where})"
        if self.hint:
            text += f"; {self.hint}"
        return " ".join(text.split())

    def __str__(self) -> str:
        return self.one_line()


class InputError(CxrgError):
    """A file, row or value the user handed us is unreadable or malformed."""


class UsageError(CxrgError):
    """Options that do not fit together, or an unknown name."""

    exit_code = 2


class MissingWeightsError(CxrgError):
    """A weights file a model needs is not where we looked."""


class NoPrediction(CxrgError):
    """The model answered but located nothing (MAIRA-2's answer without a box): the harness records the
    sample with status no-prediction, leaves it out of the statistics and counts it per class."""

