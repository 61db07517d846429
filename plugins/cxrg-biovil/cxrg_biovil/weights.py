"""Where a BioViL model's files are, or one clear error saying which file is missing and how to get it.

Nothing is ever downloaded: the weights folder is `--weights`, else $CXRG_HOME, else ~/.cache/cxrg. Inside
it, each model's Hugging Face repository is a folder of the same name (microsoft/BiomedVLP-BioViL-T/...),
as `hf download REPO --local-dir` writes it. The image checkpoint is looked for in that folder (where the
Hub publishes it) and then directly in the weights folder (where hi-ml users often keep it).
"""

from __future__ import annotations

from pathlib import Path

from cxrg.errors import MissingWeightsError
from cxrg_biovil.variants import Variant

TEXT_FILES = ("config.json", "vocab.txt")
TEXT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def download_hint(variant: Variant, root: Path) -> str:
    return (f"on a machine with internet: hf download {variant.text_repo} --revision {variant.text_revision} "
            f"--local-dir {root / variant.text_repo}, then copy that folder here")


def find_checkpoint(variant: Variant, root: Path) -> Path:
    candidates = (root / variant.text_repo / variant.checkpoint, root / variant.checkpoint)
    for path in candidates:
        if path.is_file():
            return path
    raise MissingWeightsError(f"{variant.name}: image checkpoint {variant.checkpoint} not found",
                              where="looked for " + " and ".join(map(str, candidates)),
                              hint=download_hint(variant, root))


def find_text_folder(variant: Variant, root: Path) -> Path:
    folder = root / variant.text_repo
    missing = [name for name in TEXT_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TEXT_WEIGHTS):
        missing.append(" or ".join(TEXT_WEIGHTS))
    if missing:
        raise MissingWeightsError(f"{variant.name}: text model folder lacks {', '.join(missing)}",
                                  where=str(folder), hint=download_hint(variant, root))
    return folder
