"""Shared fixtures: small datasets in the real formats, written by the tests."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from cxrg_test_support import MS_CXR_HEADER, MS_CXR_SAMPLES, mimic_path
from PIL import Image

# The tests run tiny models, where a second thread costs more in hand-over than it saves, and a thread
# that spins while another process holds the core can stall every small operation for milliseconds.
torch.set_num_threads(1)

# Only cxrg's own models are discovered, whatever plugins this environment holds (tests that need a plugin
# set CXRG_LOAD_PLUGINS themselves); see cxrg.config.plugin_filter.
os.environ["CXRG_LOAD_PLUGINS"] = ""

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if os.environ.get("CXRG_SHARED_DATA"):
    SHARED_DATA = Path(os.environ["CXRG_SHARED_DATA"])

@pytest.fixture
def ms_cxr(tmp_path: Path) -> tuple[Path, Path]:
    """An MS-CXR-format CSV and its images (MIMIC-CXR-JPG layout, JPEG files)."""
    images = tmp_path / "mimic-cxr-jpg"
    rows = []
    seen = set()
    for k, (dicom_id, category, phrase, boxes, (h, w)) in enumerate(MS_CXR_SAMPLES):
        if dicom_id not in seen:
            path = images / mimic_path(dicom_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(k)
            Image.fromarray(rng.integers(0, 255, size=(h, w), dtype=np.uint8)).save(path, quality=95)
            seen.add(dicom_id)
        for x, y, bw, bh in boxes:
            rows.append([dicom_id, category, phrase, mimic_path(dicom_id), x, y, bw, bh, w, h])
    annotations = tmp_path / "MS_CXR_Local_Alignment_v1.0.0.csv"
    with annotations.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MS_CXR_HEADER)
        writer.writerows(rows)
    return annotations, images


@pytest.fixture(autouse=True)
def _restore_cxrg_environment():
    """Commands pass model settings through CXRG_* variables; keep one test's from leaking into the next."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("CXRG_")}
    yield
    for key in [k for k in os.environ if k.startswith("CXRG_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A tiny random LDM of the real classes in the real on-disk layout (`cxrg weights tiny`), shared by the
    test modules; tests that change weight files work on a copy."""
    from cxrg.ldm.tiny import write_tiny

    return write_tiny(tmp_path_factory.mktemp("weights"), seed=0)


@pytest.fixture(scope="session")
def ldm(tiny):
    from cxrg.ldm.loading import load_ldm

    return load_ldm(tiny)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> tuple[Path, Path]:
    """A 6-phantom tuning manifest and its images (cxrg.tuning.phantoms), for the tuner's tests."""
    from cxrg.anatomy.lut import Lut
    from cxrg.tuning.phantoms import write_phantom_set

    folder = tmp_path_factory.mktemp("phantoms")
    return write_phantom_set(folder, 6, Lut.default()), folder / "images"
