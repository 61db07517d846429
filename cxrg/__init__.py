"""cxrg: chest X-ray phrase grounding toolkit.

The Python API (cxrg.api) is re-exported here lazily: `import cxrg` stays light (no torch, no numpy
work) until one of these names is used.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("Grounding", "Model", "Run", "bench", "demo_image", "ground", "load_model", "read_run")
__all__ = ["__version__", *_API]

if TYPE_CHECKING:
    from cxrg.api import (  # noqa: F401
        Grounding,
        Model,
        Run,
        bench,
        demo_image,
        ground,
        load_model,
        read_run,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from cxrg import api

        return getattr(api, name)
    raise AttributeError(f"module 'cxrg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
