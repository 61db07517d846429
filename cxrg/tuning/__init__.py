"""Prompt tuning of the anatomy token embeddings (paper Section 3.3, eq. 2-4)."""


def run(*args, **kwargs):
    """`cxrg tune` as a call (cxrg.tuning.command.run), imported lazily."""
    from cxrg.tuning.command import run as _run

    return _run(*args, **kwargs)
