"""Damaged anatomy rows for the tuning experiment: a copy of a weights folder whose text encoder's token
embeddings have left<->right and upper<->lower swapped, or every anatomy row re-initialised.

`cxrg tune` starts its codebook from the encoder's own rows, so tuning on such a copy starts from the
damaged rows; the U-Net, autoencoder and every other row are untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from cxrg.ldm.weights import WeightPaths

SWAPS = (("left", "right"), ("upper", "lower"))


def perturb(source: Path, target: Path, how: str, seed: int = 0) -> Path:
    """Copy `source` to `target` with the anatomy rows damaged: how = 'swapped' or 'reinit'."""
    from safetensors.torch import load_file, save_file

    from cxrg.ldm.text import sub_tokens, vocabulary_rows
    from cxrg.ldm.tokenizer import load_tokenizer

    if how not in ("swapped", "reinit"):
        raise ValueError(f"unknown perturbation {how!r}")
    source, target = Path(source), Path(target)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("tuned_embeddings.safetensors"))
    paths = WeightPaths(target)
    file = paths.text_encoder / "model.safetensors"
    state = load_file(str(file))
    key = next(k for k in state if k.endswith("token_embedding.weight"))
    table = state[key].clone()
    tokenizer = load_tokenizer(str(paths.tokenizer) if (paths.tokenizer / "vocab.json").is_file() else None)
    if how == "swapped":
        for a, b in SWAPS:
            (ia,), (ib,) = sub_tokens(tokenizer, a), sub_tokens(tokenizer, b)
            table[[ia, ib]] = table[[ib, ia]]
    else:
        ids, anatomy = vocabulary_rows(tokenizer, shared_tokens="frozen")  # location-only sub-tokens
        rows = [i for i, flag in zip(ids, anatomy, strict=True) if flag]
        generator = torch.Generator().manual_seed(seed)
        std = float(table[rows].std())
        table[rows] = torch.randn((len(rows), table.shape[1]), generator=generator) * std
    state[key] = table.contiguous()
    save_file(state, str(file), metadata={"format": "pt"})
    return target
