"""The committed organism weights (package data) and the command that copies or regenerates them.

The weights are committed (about 12 MB in the real layout) so that tests and users get the organism
without training; `regenerate` trains it again from the seed and checks the tensors' sha256 against
EXPECTED_SHA256 (same machine type, same torch: bit-identical; another CPU or torch may differ in the last
bits, which the check reports rather than hides).
"""

from __future__ import annotations

import os
import shutil
import tempfile
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


def copy_weights(target: Path, source: Path | None = None, expected: str | None = None) -> Path:
    """Copy the committed weights to `target` (merged into an existing folder; tuned embeddings kept).

    The copy is made in a staging folder beside the files, its tensors are hashed and compared with
    `expected` (default EXPECTED_SHA256), and only a matching copy is moved into place: a tampered or
    damaged source is refused with one line and leaves nothing behind.
    """
    source = committed_weights() if source is None else Path(source)
    expected = EXPECTED_SHA256 if expected is None else expected
    target = Path(target)
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cxrg-organism-", dir=target))
    try:
        files = [path for path in sorted(source.rglob("*"))
                 if path.is_file() and "__pycache__" not in path.parts]
        for path in files:
            destination = staging / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
        digest = staged_digest(staging)
        if digest != expected:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                shutil.rmtree(target, ignore_errors=True)
            raise InputError(f"the organism weights do not match the committed hash (sha256 of the tensors "
                             f"{digest[:16]}..., expected {expected[:16]}...); nothing was copied",
                             where=str(source), hint="reinstall cxrg, or regenerate them: "
                             "`cxrg weights organism DIR --train`")
        for path in files:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / path.relative_to(source), destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def staged_digest(folder: Path) -> str:
    """The combined tensor sha256 of a weights folder; a file that does not even load gives 'unreadable'."""
    from cxrg.organism.train import weight_hashes

    try:
        return str(weight_hashes(folder)["combined"])
    except Exception as exc:  # noqa: BLE001 (a damaged pickle or safetensors file raises anything)
        return f"unreadable ({type(exc).__name__})"


def regenerate(target: Path, seed: int = 0, log=print) -> tuple[dict, bool]:
    """Train the organism into `target`; (summary, whether the hash matches the committed weights)."""
    from cxrg.organism.train import OrganismConfig, train_organism

    summary = train_organism(Path(target), OrganismConfig(seed=seed), log=log)
    return summary, seed == 0 and summary["sha256"]["combined"] == EXPECTED_SHA256
