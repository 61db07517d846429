"""The committed organism weights (package data) and the command that copies or regenerates them.

The weights are committed (about 12 MB in the real layout) so that tests and users get the organism
without training; `regenerate` trains it again from the seed and checks the tensors' sha256 against
EXPECTED_SHA256 (same machine type, same torch: bit-identical; another CPU or torch may differ in the last
bits, which the check reports rather than hides).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cxrg.errors import InputError

FOLDER = Path(__file__).parent / "weights"
EXPECTED_SHA256 = "d71f17eb383d7abf5442a302f33cf6d9350e5823c49429550b7836769f9643f3"


def committed_weights() -> Path:
    """The weights folder shipped in the package (real layout); InputError if the package lacks it."""
    from cxrg.ldm.weights import WeightPaths

    paths = WeightPaths(FOLDER)
    if not paths.unet.is_file() or not paths.autoencoder.is_file():
        raise InputError("the organism weights are not in this installation", where=str(FOLDER),
                         hint="regenerate them: `cxrg weights organism DIR --train` (about 20 min on a CPU)")
    return FOLDER


def copy_weights(target: Path) -> Path:
    """Copy the committed weights to `target` (merged into an existing folder; tuned embeddings kept)."""
    source = committed_weights()
    target = Path(target)
    for path in source.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
    return target


def regenerate(target: Path, seed: int = 0, log=print) -> tuple[dict, bool]:
    """Train the organism into `target`; (summary, whether the hash matches the committed weights)."""
    from cxrg.organism.train import OrganismConfig, train_organism

    summary = train_organism(Path(target), OrganismConfig(seed=seed), log=log)
    return summary, seed == 0 and summary["sha256"]["combined"] == EXPECTED_SHA256
