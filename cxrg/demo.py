"""The demonstration radiograph: a real chest X-ray shipped by the PyPI package pydicom-data (MIT)."""

from __future__ import annotations

from pathlib import Path


def demo_image_path() -> Path:
    """RG1_UNCR.dcm: CR, PA, 1841 x 1955, 15-bit, MONOCHROME1."""
    from cxrg.errors import CxrgError

    try:
        import data_store
    except ImportError as exc:
        raise CxrgError("pydicom-data is not installed", hint="pip install pydicom-data") from exc
    path = Path(data_store.__file__).parent / "data" / "RG1_UNCR.dcm"
    if not path.is_file():
        found = list(Path(data_store.__file__).parent.rglob("RG1_UNCR.dcm"))
        if not found:
            raise CxrgError("RG1_UNCR.dcm not found in pydicom-data", where=str(path.parent))
        path = found[0]
    return path
