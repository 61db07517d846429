"""Benchmarking: datasets, metrics, bootstrap, the harness, reports; `cxrg.bench.run(...)` runs a bench.

`cxrg.bench` is also the Python API's bench function (`cxrg.bench("oracle,prior", "ms-cxr", ...)`, see
cxrg.api.bench): once this package is imported it is what `cxrg.bench` names, so the package itself is
callable and forwards to cxrg.api.bench.
"""

import sys
import types


def run(*args, **kwargs):
    """`cxrg bench` as a call (cxrg.bench.runner.run), imported lazily so `import cxrg.bench` stays light."""
    from cxrg.bench.runner import run as _run

    return _run(*args, **kwargs)


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """cxrg.api.bench: score models on a dataset and return the run (docs/api.md)."""
        from cxrg.api import bench

        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
