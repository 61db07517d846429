"""Build the LDM's networks with MONAI core classes and load the bundle's (old-layout) checkpoints."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cxrg.config import weights_root
from cxrg.errors import InputError, UsageError
from cxrg.ldm.config import LdmArchitecture, architecture_from_bundle
from cxrg.ldm.ddim import alphas_cumprod
from cxrg.ldm.weights import WeightPaths

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {name!r}", hint=f"choose one of: {', '.join(DTYPES)}")
    return DTYPES[name]


def build_autoencoder(architecture: LdmArchitecture) -> torch.nn.Module:
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(**architecture.autoencoder)


def build_unet(architecture: LdmArchitecture, fast_attention: bool = True) -> torch.nn.Module:
    """The diffusion U-Net; `fast_attention` uses PyTorch's fused attention wherever nothing is captured."""
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(**architecture.unet, use_flash_attention=fast_attention)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict saved with torch.save (bare or as {'state_dict': ...}), loaded with weights_only=True."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("checkpoint not found", where=str(path)) from None
    except Exception as exc:
        raise InputError(f"cannot read the checkpoint: {type(exc).__name__}: {exc}", where=str(path),
                         hint="it must be a PyTorch state dict (torch.save), readable with weights_only=True",
                         ) from exc
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError("the checkpoint is not a state dict of tensors", where=str(path))
    return data


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """Load a state dict in MONAI core's layout or in GenerativeModels' old one (converted by MONAI)."""
    current = module.state_dict()
    try:
        if set(state) == set(current):
            module.load_state_dict(state)
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # MONAI prints progress we do not want
                module.load_old_state_dict(dict(state))  # type: ignore[operator]
    except (KeyError, RuntimeError) as exc:
        raise InputError(f"the checkpoint does not fit the architecture: {type(exc).__name__}: {exc}",
                         where=str(where),
                         hint="check that the bundle's configs/inference.json matches its models/*.pth",
                         ) from exc


def to_old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MONAI core keys -> GenerativeModels keys (the inverse of MONAI's load_old_state_dict)."""
    old = {}
    for key, value in state.items():
        new_key = key
        if ".attn.to_" in key or ".attn.out_proj." in key:
            new_key = key.replace(".attn.out_proj.", ".proj_attn.").replace(".attn.to_", ".to_")
        elif "transformer_blocks" in key and ".out_proj." in key:
            new_key = key.replace(".out_proj.", ".to_out.0.")
        old[new_key.replace("postconv", "conv")] = value
    return old


def text_encoder_fingerprint(text_encoder: Any) -> str:
    """Identifies the base text encoder: a hash of its config and token embedding table."""
    import hashlib

    table = text_encoder.get_input_embeddings().weight.detach().to(torch.float32).cpu().contiguous()
    config = {k: v for k, v in text_encoder.config.to_dict().items()
              if not k.startswith("_") and k not in ("transformers_version", "torch_dtype", "dtype")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(table.numpy().tobytes())
    return digest.hexdigest()[:32]


@dataclass
class LoadedLdm:
    autoencoder: Any  # monai AutoencoderKL
    unet: Any  # monai DiffusionModelUNet
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any
    architecture: LdmArchitecture
    alphas: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    fingerprint: str


def load_ldm(weights_dir: str | Path | None = None, device: str = "cpu", dtype: str = "float32",
             fast_attention: bool = True) -> LoadedLdm:
    """Autoencoder, U-Net, text encoder and tokenizer from the weights folder, ready for inference."""
    from transformers import CLIPTextModel

    from cxrg.ldm.tokenizer import load_tokenizer

    paths = WeightPaths(weights_root(weights_dir))
    paths.require()
    if device == "cpu":
        torch.set_flush_denormal(True)  # tiny values would otherwise take a slow path on CPUs
    torch_dtype = resolve_dtype(dtype)
    architecture = architecture_from_bundle(paths.bundle)
    autoencoder = build_autoencoder(architecture)
    load_state(autoencoder, read_checkpoint(paths.autoencoder), paths.autoencoder)
    unet = build_unet(architecture, fast_attention)
    load_state(unet, read_checkpoint(paths.unet), paths.unet)
    try:
        text_encoder = CLIPTextModel.from_pretrained(str(paths.text_encoder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the text encoder: {exc}", where=str(paths.text_encoder)) from exc
    if text_encoder.config.hidden_size != architecture.unet["cross_attention_dim"]:
        raise InputError(f"text encoder width {text_encoder.config.hidden_size} does not match the U-Net's "
                         f"cross_attention_dim {architecture.unet['cross_attention_dim']}",
                         where=str(paths.text_encoder))
    tokenizer = load_tokenizer(str(paths.tokenizer) if (paths.tokenizer / "vocab.json").is_file() else None)
    fingerprint = text_encoder_fingerprint(text_encoder)
    torch_device = torch.device(device)
    for module in (autoencoder, unet, text_encoder):
        module.to(device=torch_device, dtype=torch_dtype).eval().requires_grad_(False)
    return LoadedLdm(autoencoder, unet, text_encoder, tokenizer, architecture,
                     alphas_cumprod(architecture.scheduler), torch_device, torch_dtype, fingerprint)
