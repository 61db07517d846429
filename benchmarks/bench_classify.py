"""Diffusion-classifier speed: images per second for a given number of (t, eps) draws, batched against one
pass at a time, with the U-Net of the real architecture (random weights).

Times `Classifier.error_maps` (encode the image, noise it with its draws, run the U-Net for every (draw,
class prompt) pair, per-position errors): the classifier's own cost. The heatmaps of the strategies cost
what `benchmarks/bench_ldm.py` measures (one inversion per image, 30 conditional passes per prompt).
Modes: `one pass at a time` (batch 1: the straightforward loop over draws and prompts), `one draw at a
time` (batch 2: both class prompts of a draw together) and `batched` (--batch pairs per call). The modes
take turns for --rounds rounds and each keeps its fastest round (a shared machine's other load only ever
adds time). Also checks that the three give the same errors.

    python benchmarks/bench_classify.py [--arch real|tiny] [--size 256] [--draws 8] [--images 2] [--batch 16]
                                        [--rounds 2]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).parent))
import argparse
import os
import platform
import time

import numpy as np
import torch
from machine import cpu_model  # noqa: E402

from cxrg.classify.diffusion import DrawSettings
from cxrg.classify.heatmaps import HeatmapSource
from cxrg.classify.runner import Classifier
from cxrg.ldm.config import LdmArchitecture
from cxrg.ldm.ddim import alphas_cumprod
from cxrg.ldm.heatmap import LdmEngine
from cxrg.ldm.loading import LoadedLdm, text_encoder_fingerprint
from cxrg.ldm.tiny import TINY, build_random, sd21_text_config, tiny_text_config
from cxrg.ldm.tokenizer import load_tokenizer


def make_ldm(arch_name: str, size: int, device: str) -> LoadedLdm:
    if arch_name == "tiny":
        arch, text = TINY, tiny_text_config()
    else:
        arch, text = LdmArchitecture(image_size=size), sd21_text_config()
    autoencoder, unet, encoder = build_random(arch, text, seed=0)
    with torch.no_grad():  # MONAI zero-initialises output layers; make the output depend on the prompt
        for name, param in unet.named_parameters():
            if not param.any() and "norm" not in name:
                param.normal_(0, 0.02)
    for module in (autoencoder, unet, encoder):
        module.to(device).eval().requires_grad_(False)
    return LoadedLdm(autoencoder, unet, encoder, load_tokenizer(), arch, alphas_cumprod(arch.scheduler),
                     torch.device(device), torch.float32, text_encoder_fingerprint(encoder))


def time_mode(ldm: LoadedLdm, images: list[np.ndarray], draws: int, batch: int) -> tuple[float, list]:
    engine = LdmEngine(ldm)
    classifier = Classifier(engine, HeatmapSource(engine, "pneumothorax"), "No acute cardiopulmonary process",
                            "pneumothorax", DrawSettings(draws=draws, batch_size=batch), ["none"])
    maps = []
    if ldm.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for k, image in enumerate(images):
        maps.append(classifier.error_maps(f"image-{k}", engine.model_input(image)))
    if ldm.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("real", "tiny"), default="real")
    parser.add_argument("--size", type=int, default=256, help="input size of the real architecture")
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--keep-denormals", action="store_true", help="do not flush denormals (CPU)")
    args = parser.parse_args()
    torch.set_flush_denormal(not args.keep_denormals)
    ldm = make_ldm(args.arch, args.size, args.device)
    size = ldm.architecture.image_size
    rng = np.random.default_rng(0)
    images = [rng.random((size + 20, size)).astype(np.float32) for _ in range(args.images)]
    params = sum(p.numel() for p in ldm.unet.parameters()) / 1e6
    print(f"machine: {platform.machine()} {cpu_model()} cpus={os.cpu_count()} "
          f"threads={torch.get_num_threads()} device={args.device} torch={torch.__version__}")
    latent = size // 2 ** (len(ldm.architecture.autoencoder["channels"]) - 1)
    print(f"settings: {args.arch} U-Net ({params:.1f} M parameters), input {size}, latent {latent}, "
          f"{args.draws} draws x 2 class prompts = {2 * args.draws} U-Net passes per image, "
          f"{args.images} images, float32, "
          f"denormals {'kept' if args.keep_denormals else 'flushed'}")
    modes = (("one pass at a time", 1), ("one draw at a time", 2), (f"batched ({args.batch})", args.batch))
    for _, batch in modes:  # warm-up: first calls with a new batch shape pay one-off costs
        time_mode(ldm, images[:1], max(1, (batch + 1) // 2), batch)
    results: dict[str, tuple[float, list]] = {}
    for _ in range(args.rounds):
        for label, batch in modes:
            seconds, maps = time_mode(ldm, images, args.draws, batch)
            if label not in results or seconds < results[label][0]:
                results[label] = (seconds, maps)
    base_seconds, base_maps = results["one pass at a time"]
    print(f"{'mode':<22}{'s/image':>10}{'images/s':>10}{'speed-up':>10}{'max rel diff':>14}")
    for label, (seconds, maps) in results.items():
        diff = max(float(np.max(np.abs(m - b) / np.maximum(np.abs(b), 1e-12)))
                   for m, b in zip(maps, base_maps, strict=True))
        print(f"{label:<22}{seconds / len(images):>10.3f}{len(images) / seconds:>10.3f}"
              f"{base_seconds / seconds:>9.1f}x{diff:>14.1e}")


if __name__ == "__main__":
    main()
