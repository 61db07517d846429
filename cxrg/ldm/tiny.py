"""A tiny LDM of the same classes as the real one, from a seed, written in the real on-disk layout.

For tests, demonstrations and the tuning learnability experiments: every command runs with
`--weights DIR` on it before a user has the real weights. The maps it gives mean nothing (random
weights); the geometry, the files and the messages are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cxrg.ldm.config import BUNDLE_SCHEDULER, LdmArchitecture
from cxrg.ldm.loading import build_autoencoder, build_unet, to_old_layout
from cxrg.ldm.tokenizer import write_tokenizer_files
from cxrg.ldm.weights import WeightPaths

TEXT_WIDTH = 32
TINY = LdmArchitecture(
    autoencoder={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "latent_channels": 3,
                 "channels": [8, 16, 16], "num_res_blocks": 1, "norm_num_groups": 8, "norm_eps": 1e-6,
                 "attention_levels": [False, False, False],
                 "with_encoder_nonlocal_attn": True, "with_decoder_nonlocal_attn": True},
    unet={"spatial_dims": 2, "in_channels": 3, "out_channels": 3, "channels": [16, 32, 32],
          "num_res_blocks": 2, "attention_levels": [False, True, True], "norm_num_groups": 8,
          "norm_eps": 1e-6, "resblock_updown": False, "num_head_channels": [0, 16, 16],
          "with_conditioning": True, "transformer_num_layers": 1, "cross_attention_dim": TEXT_WIDTH},
    scheduler=dict(BUNDLE_SCHEDULER),
    latent_scale=0.3,
    image_size=64,
)


def tiny_text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu",
                          projection_dim=TEXT_WIDTH, bos_token_id=49406, eos_token_id=49407, pad_token_id=0)


def sd21_text_config():
    """The shape of SD 2.1-base's text encoder (OpenCLIP ViT-H/14 text tower cut at its 23rd layer)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                          num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                          projection_dim=512, bos_token_id=49406, eos_token_id=49407, pad_token_id=1)


def build_random(architecture: LdmArchitecture, text_config, seed: int = 0,
                 randomise_zero_layers: bool = True):
    """Autoencoder, U-Net and CLIP text encoder of the given shapes with seeded random weights.

    MONAI initialises the U-Net's output convolution, the transformer `proj_out` and every residual block's
    second convolution to zero, so a freshly built U-Net outputs exactly 0 whatever its input: the DDIM
    trajectory would be trivial. `randomise_zero_layers` gives those all-zero weights small seeded values.
    """
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    autoencoder, unet = build_autoencoder(architecture), build_unet(architecture)
    text = CLIPTextModel(text_config)
    if randomise_zero_layers:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for parameter in unet.parameters():
                if parameter.dim() > 1 and not parameter.any():
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return autoencoder, unet, text


def write_random(folder: Path, architecture: LdmArchitecture, text_config, seed: int = 0,
                 old_layout: bool = True, note: str = "random weights") -> Path:
    """Write random weights of the given shapes under `folder` in the layout of weights.py."""
    paths = WeightPaths(Path(folder))
    autoencoder, unet, text_encoder = build_random(architecture, text_config, seed)
    (paths.bundle / "models").mkdir(parents=True, exist_ok=True)
    (paths.bundle / "configs").mkdir(parents=True, exist_ok=True)
    convert = to_old_layout if old_layout else dict
    torch.save(convert(autoencoder.state_dict()), paths.autoencoder)
    torch.save(convert(unet.state_dict()), paths.unet)
    (paths.bundle / "configs" / "cxrg_architecture.json").write_text(
        json.dumps({**architecture.to_dict(), "note": f"{note}, seed {seed}: not the real weights"},
                   indent=2))
    text_encoder.save_pretrained(str(paths.text_encoder), safe_serialization=True)
    write_tokenizer_files(paths.tokenizer)
    return Path(folder)


def write_tiny(folder: Path, seed: int = 0, old_layout: bool = True) -> Path:
    """Write a random tiny LDM under `folder` in the layout of weights.py; returns the folder."""
    return write_random(folder, TINY, tiny_text_config(), seed, old_layout, note="tiny random LDM")
