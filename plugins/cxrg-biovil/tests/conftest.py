"""Shared fixtures: one set of random-weight files for the session, and the loaded models."""

from __future__ import annotations

from pathlib import Path

import pytest
from biovil_fakes import write_weights
from cxrg_biovil.model import BioViL, BioViLT


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="session")
def biovil(weights: Path) -> BioViL:
    model = BioViL()
    model.load(weights_dir=weights)
    return model


@pytest.fixture(scope="session")
def biovil_t(weights: Path) -> BioViLT:
    model = BioViLT()
    model.load(weights_dir=weights)
    return model
