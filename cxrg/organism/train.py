"""Train the organism: autoencoder, then U-Net (v-prediction) on phantoms; write the real on-disk layout.

Deterministic from a seed on one machine: one torch thread, seeded generators everywhere, phantoms drawn
from numpy generators, no data-loader workers. The text encoder is a seeded random CLIPTextModel (the real
class, tiny config), frozen: the U-Net learns to read its token features, as the real LDM learned to read
SD 2.1's frozen encoder. Captions are dropped (replaced by "") 10 % of the time so the unconditional pass
that the inversion uses is a trained one.

The committed organism is `OrganismConfig()`. The other fields are the variants tried when its side words
did not bind (docs/organism.md, "What was tried"): a text encoder trained with the U-Net (`text_lr`), half
the steps drawn from the timesteps around the capture window (`t_focus`), a third U-Net level with attention
at 8 x 8 (`unet_channels`, `unet_attention`). None bound them better on the validation phantoms.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from cxrg.anatomy.lut import Lut
from cxrg.ldm.config import BUNDLE_SCHEDULER, LdmArchitecture
from cxrg.ldm.loading import build_autoencoder, build_unet, to_old_layout
from cxrg.ldm.tiny import TEXT_WIDTH, tiny_text_config
from cxrg.ldm.tokenizer import load_tokenizer, write_tokenizer_files
from cxrg.ldm.weights import WeightPaths
from cxrg.organism.phantoms import random_phantom

ORGANISM = LdmArchitecture(
    autoencoder={"spatial_dims": 2, "in_channels": 1, "out_channels": 1, "latent_channels": 3,
                 "channels": [16, 32, 32], "num_res_blocks": 1, "norm_num_groups": 8, "norm_eps": 1e-6,
                 "attention_levels": [False, False, False],
                 "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False},
    # two levels: the bottleneck and the first decoder block run at 16 x 16 (the paper's 256 positions)
    unet={"spatial_dims": 2, "in_channels": 3, "out_channels": 3, "channels": [32, 64],
          "num_res_blocks": 2, "attention_levels": [False, True], "norm_num_groups": 8,
          "norm_eps": 1e-6, "resblock_updown": False, "num_head_channels": [0, 64],
          "with_conditioning": True, "transformer_num_layers": 1, "cross_attention_dim": TEXT_WIDTH},
    scheduler=dict(BUNDLE_SCHEDULER),
    latent_scale=1.0,
    image_size=128,
)


FOCUS = (300, 800)
"""The timesteps around the default capture window (t = 690..400), where the words must place a finding
that the noisy image no longer shows."""

TOKEN_SCALE = 50.0
"""The random encoder's token embeddings (std 0.02) are scaled to std 1 while its position embeddings stay
at 0.02: each output then carries its own word, and the padding tokens after the prompt (which a causal
CLIP lets see the whole prompt) stay nearly prompt-independent. With std 0.02 the first organism routed
the prompt through the padding tokens and its word maps did not ground (validation CNR 0.67, laterality
74 %)."""


@dataclass(frozen=True)
class OrganismConfig:
    seed: int = 0
    images: int = 3000
    ae_steps: int = 300
    ae_batch: int = 8
    ae_lr: float = 2e-3
    unet_steps: int = 1800
    unet_batch: int = 16
    unet_lr: float = 1e-3
    drop_caption: float = 0.1
    spread: float = 1.0
    unet_channels: tuple[int, ...] = (32, 64)
    unet_attention: tuple[bool, ...] = (False, True)
    text_lr: float = 0.0  # > 0: the text encoder is trained with the U-Net at this peak rate
    t_focus: float = 0.0  # share of steps whose t is drawn from FOCUS (the capture window) instead of all t
    text_layers: int = 2  # transformer layers of the frozen text encoder (0: each output is its own token's)
    canonical: bool = False  # canonical captions and places (cxrg.organism.phantoms.canonical_locations)

    def to_dict(self) -> dict:
        return asdict(self)


def architecture(config: OrganismConfig) -> LdmArchitecture:
    """ORGANISM with the U-Net's levels of `config` (one attention head per attention level)."""
    channels, attention = list(config.unet_channels), list(config.unet_attention)
    unet = {**ORGANISM.unet, "channels": channels, "attention_levels": attention,
            "num_head_channels": [c if a else 0 for c, a in zip(channels, attention, strict=True)]}
    return LdmArchitecture(ORGANISM.autoencoder, unet, ORGANISM.scheduler, ORGANISM.latent_scale,
                           ORGANISM.image_size)


def text_config(layers: int = 2):
    """The tiny CLIP text encoder of cxrg.ldm.tiny (width 32, SD 2.1's vocabulary) with `layers` layers."""
    config = tiny_text_config()
    config.num_hidden_layers = layers
    return config


def _cosine(step: int, total: int, lr: float, warmup: int = 50) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))


def train_organism(folder: Path, config: OrganismConfig = OrganismConfig(),
                   log: Callable[[str], None] = print) -> dict:
    """Train and write the organism under `folder`; returns a summary (losses, seconds, file hashes)."""
    from transformers import CLIPTextModel

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    arch = architecture(config)
    lut = Lut.default()
    rng = np.random.default_rng(config.seed)
    phantoms = [random_phantom(lut, arch.image_size, rng, config.spread, config.canonical)
                for _ in range(config.images)]
    pixels = torch.from_numpy(np.stack([p.image for p in phantoms]))[:, None]
    log(f"{len(phantoms)} phantoms in {time.perf_counter() - started:.0f} s")

    torch.manual_seed(config.seed)
    autoencoder, unet = build_autoencoder(arch), build_unet(arch, fast_attention=True)
    text = CLIPTextModel(text_config(config.text_layers)).eval().requires_grad_(False)
    train_text = config.text_lr > 0
    with torch.no_grad():  # word identity dominates each token's output (see TOKEN_SCALE)
        text.get_input_embeddings().weight.mul_(TOKEN_SCALE)
    gen = torch.Generator().manual_seed(config.seed + 1)

    # -- autoencoder: L1 + small KL ------------------------------------------------------------------
    opt = torch.optim.Adam(autoencoder.parameters(), lr=config.ae_lr)
    autoencoder.train()
    from cxrg.progress import make_bar

    bar = make_bar("organism autoencoder", total=config.ae_steps, unit="steps")
    for step in range(config.ae_steps):
        for group in opt.param_groups:
            group["lr"] = _cosine(step, config.ae_steps, config.ae_lr)
        index = torch.randint(0, len(pixels), (config.ae_batch,), generator=gen)
        x = pixels[index]
        z_mu, z_sigma = autoencoder.encode(x)  # type: ignore[operator]
        z = z_mu + z_sigma * torch.randn(z_mu.shape, generator=gen)
        recon = autoencoder.decode(z)  # type: ignore[operator]
        kl = 0.5 * (z_mu ** 2 + z_sigma ** 2 - torch.log(z_sigma ** 2 + 1e-12) - 1).mean()
        loss = (recon - x).abs().mean() + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == config.ae_steps - 1:
            log(f"autoencoder {step}: loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
        bar.advance(1)
    bar.close()
    autoencoder.eval().requires_grad_(False)
    with torch.no_grad():
        latents = torch.cat([autoencoder.encode(pixels[i:i + 100])[0]  # type: ignore[operator]
                             for i in range(0, len(pixels), 100)])
    scale = float(1.0 / latents.std())
    latents = latents * scale
    arch = LdmArchitecture(arch.autoencoder, arch.unet, arch.scheduler, round(scale, 6), arch.image_size)
    log(f"latents {tuple(latents.shape[1:])}, scale {scale:.4f}")

    # -- text: every caption encoded once by the frozen encoder ----------------------------------------
    tokenizer = load_tokenizer(None)
    captions = sorted({p.prompt for p in phantoms} | {""})
    with torch.no_grad():
        ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True,
                        return_tensors="pt").input_ids
        contexts = torch.cat([text(ids[i:i + 64]).last_hidden_state for i in range(0, len(ids), 64)])
    if train_text:
        text.requires_grad_(True).train()
    which = torch.tensor([captions.index(p.prompt) for p in phantoms])
    empty = captions.index("")

    # -- U-Net: v-prediction on the bundle's schedule --------------------------------------------------
    from cxrg.ldm.ddim import alphas_cumprod

    alphas = alphas_cumprod(arch.scheduler).float()
    groups: list[tuple[list[torch.nn.Parameter], float]] = [(list(unet.parameters()), config.unet_lr)]
    if train_text:
        groups.append((list(text.parameters()), config.text_lr))
    opt = torch.optim.AdamW([{"params": params, "lr": peak} for params, peak in groups], weight_decay=0.0)
    unet.train()
    ema = 0.0
    bar = make_bar("organism U-Net", total=config.unet_steps, unit="steps")
    for step in range(config.unet_steps):
        for group, (_, peak) in zip(opt.param_groups, groups, strict=True):
            group["lr"] = _cosine(step, config.unet_steps, peak)
        index = torch.randint(0, len(latents), (config.unet_batch,), generator=gen)
        x0 = latents[index]
        t = torch.randint(0, arch.scheduler["num_train_timesteps"], (config.unet_batch,), generator=gen)
        if config.t_focus > 0:
            focused = torch.randint(FOCUS[0], FOCUS[1] + 1, (config.unet_batch,), generator=gen)
            t = torch.where(torch.rand(config.unet_batch, generator=gen) < config.t_focus, focused, t)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        v = a.sqrt() * noise - (1 - a).sqrt() * x0
        cap = which[index].clone()
        cap[torch.rand(config.unet_batch, generator=gen) < config.drop_caption] = empty
        context = text(ids[cap]).last_hidden_state if train_text else contexts[cap]
        pred = unet(xt, timesteps=t, context=context)
        loss = ((pred - v) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for params, _ in groups for p in params], 1.0)
        opt.step()
        ema = loss.item() if step == 0 else 0.98 * ema + 0.02 * loss.item()
        if step % 200 == 0 or step == config.unet_steps - 1:
            log(f"unet {step}: loss {ema:.4f} ({time.perf_counter() - started:.0f} s)")
        bar.advance(1, info=f"loss {ema:.4f}")
    bar.close()
    unet.eval()
    text.eval().requires_grad_(False)
    seconds = time.perf_counter() - started
    hashes = write_organism(Path(folder), arch, autoencoder, unet, text, config, seconds)
    log(f"written to {folder} in {seconds:.0f} s; sha256 {hashes['combined']}")
    return {"seconds": seconds, "sha256": hashes, "ae_loss": None, "unet_loss": ema}


def write_organism(folder: Path, arch: LdmArchitecture, autoencoder, unet, text, config: OrganismConfig,
                   seconds: float) -> dict:
    paths = WeightPaths(folder)
    (paths.bundle / "models").mkdir(parents=True, exist_ok=True)
    (paths.bundle / "configs").mkdir(parents=True, exist_ok=True)
    torch.save(to_old_layout({k: v.contiguous() for k, v in autoencoder.state_dict().items()}),
               paths.autoencoder)
    torch.save(to_old_layout({k: v.contiguous() for k, v in unet.state_dict().items()}), paths.unet)
    (paths.bundle / "configs" / "cxrg_architecture.json").write_text(json.dumps(
        {**arch.to_dict(), "note": "cxrg model organism: trained on synthetic chest phantoms, not the real "
                                   "weights", "organism": config.to_dict()}, indent=2) + "\n")
    # fp16 halves the files; the (frozen, random) encoder is used as stored
    text.save_pretrained(str(paths.text_encoder), safe_serialization=True)
    write_tokenizer_files(paths.tokenizer)
    return weight_hashes(folder)


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def weight_hashes(folder: Path) -> dict:
    """sha256 of the tensors (not the pickles, whose bytes may differ across torch versions)."""
    from safetensors.torch import load_file

    paths = WeightPaths(Path(folder))
    out = {"autoencoder": tensor_digest(torch.load(paths.autoencoder, weights_only=True)),
           "unet": tensor_digest(torch.load(paths.unet, weights_only=True)),
           "text_encoder": tensor_digest(load_file(str(paths.text_encoder / "model.safetensors")))}
    out["combined"] = hashlib.sha256("".join(out[k] for k in sorted(out)).encode()).hexdigest()
    return out
