"""Benchmarking: datasets, metrics, bootstrap, the harness, reports; `cxrg.bench.run(...)` runs a bench."""


def run(*args, **kwargs):
    """`cxrg bench` as a call (cxrg.bench.runner.run), imported lazily so `import cxrg.bench` stays light."""
    from cxrg.bench.runner import run as _run

    return _run(*args, **kwargs)
