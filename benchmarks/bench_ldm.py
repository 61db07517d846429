"""LDM heatmap speed: the fast path against the reference path, with the real-size architecture.

Random weights of the real shapes (MONAI bundle U-Net 263.6 M parameters, autoencoder, SD 2.1-size text
encoder); the paper's settings (100 DDIM steps, 30 captured steps, 4 layers) at a reduced input size
(`--size`, default 256: the full 512 takes about 4 minutes per reference heatmap on 2 cores). Prints seconds
per heatmap for both paths and their ratio, U-Net GFLOPs per heatmap for each path, achieved GFLOP/s
against this machine's measured matrix-multiply peak, bfloat16's speed and agreement with float32, and
(with --ground-rss) the peak resident memory of `cxrg ground` at the full 512 size.

    python benchmarks/bench_ldm.py [--size 256] [--ground-rss]

`--batch 1,2,4,8` (issue 28) measures batching across images instead: N different images at once through
the fast path (LdmEngine.maps_batch: the unconditional inversion at batch N, the conditional passes of all
N prompts batched), per N images/s, the ratio to batch 1, achieved GFLOP/s as a fraction of the matmul
peak of the dtype, and the largest difference of image 0's heatmap against its batch-1 heatmap. With
`--attention sdpa,explicit` both attention paths are timed in the same run. `--inference-steps S` shrinks
the schedule keeping its shape (captured window at 30 %..60 % of S, counted noise -> image as the paper's):
the same passes per image in the same proportions, for a shorter run on a busy machine.

    python benchmarks/bench_ldm.py --batch 1,2,4,8 --size 128 [--dtypes float32,bfloat16]
"""

from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).parent))
import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode

from cxrg.ldm.config import HeatmapSettings, LdmArchitecture
from cxrg.ldm.ddim import alphas_cumprod
from cxrg.ldm.heatmap import LdmEngine, reference_maps
from cxrg.ldm.loading import LoadedLdm, text_encoder_fingerprint
from cxrg.ldm.tiny import build_random, sd21_text_config, write_random
from cxrg.ldm.tokenizer import load_tokenizer

PROMPT = "left lower pleural effusion"




def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e9


def make_ldm(size: int, dtype: torch.dtype) -> LoadedLdm:
    arch = LdmArchitecture(image_size=size)
    autoencoder, unet, text = build_random(arch, sd21_text_config(), seed=0)
    for module in (autoencoder, unet, text):
        module.to(dtype=dtype).eval().requires_grad_(False)
    return LoadedLdm(autoencoder, unet, text, load_tokenizer(), arch, alphas_cumprod(arch.scheduler),
                     torch.device("cpu"), dtype, text_encoder_fingerprint(text))


def unet_gflops(ldm: LoadedLdm, size: int, truncated: bool) -> float:
    """GFLOPs of one U-Net forward at batch 1 (full, or stopped after the last captured layer)."""
    from cxrg.ldm.attention import capture, run_until_captured
    from cxrg.ldm.config import DEFAULT_LAYERS

    side = size // 8
    latent = torch.zeros(1, 3, side, side, dtype=ldm.dtype)
    ctx = torch.zeros(1, 77, 1024, dtype=ldm.dtype)
    t = torch.tensor([300])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        if truncated:
            with capture(ldm.unet, DEFAULT_LAYERS, stop_after_last=True):
                run_until_captured(ldm.unet, latent, timesteps=t, context=ctx)
        else:
            ldm.unet(latent, timesteps=t, context=ctx)
    return counter.get_total_flops() / 1e9


def otsu_iou(a: np.ndarray, b: np.ndarray) -> float:
    from cxrg.ldm.heatmap import otsu_threshold

    ma, mb = a > otsu_threshold(a), b > otsu_threshold(b)
    return float((ma & mb).sum() / max((ma | mb).sum(), 1))


def ground_peak_rss(tmp: Path) -> tuple[float, float]:
    """Peak RSS (GiB) and seconds of `cxrg ground --model ldm-frozen` at 512 on real-size random weights."""
    weights = write_random(tmp / "weights", LdmArchitecture(), sd21_text_config(), note="real-size random")
    from cxrg.demo import demo_image_path

    command = [sys.executable, "-m", "cxrg", "ground", str(demo_image_path()), PROMPT,
               "--model", "ldm-frozen", "--weights", str(weights), "--out", str(tmp / "out")]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    seconds = time.perf_counter() - started
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2, seconds


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def scaled_settings(steps: int) -> HeatmapSettings:
    """The paper's window (30..60 of 100) at `steps` inference steps."""
    return HeatmapSettings(otsu=False, inference_steps=steps,
                           capture_steps=tuple(range(round(0.3 * steps), round(0.6 * steps))))


def batch_sweep(args) -> None:
    """Images/s against the number of images per call, ratios within this one run."""
    batches = [int(b) for b in args.batch.split(",")]
    settings = scaled_settings(args.inference_steps)
    rng = np.random.default_rng(0)
    images = [rng.random((300, 260)).astype(np.float32) for _ in range(max(batches))]
    print(f"machine: {platform.machine()} {cpu_model()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}")
    print(f"load average before: {load_average()}")
    print(f"settings: image {args.size}x{args.size} (latent {args.size // 8}), {settings.inference_steps} "
          f"DDIM steps, captured {settings.capture_steps[0]}..{settings.capture_steps[-1]} "
          f"({settings.capture_order} order), {len(settings.layers)} layers, one prompt per image, "
          f"conditional passes per call {args.chunk}, real-size architecture with random weights")
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(f"matmul peak: float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 {peaks['bfloat16']:.0f} GFLOP/s")
    last = max(settings.inversion_steps)
    captured = len(settings.capture_steps)
    print(f"{'dtype':<9}{'attention':<10}{'invariant':>10}{'batch':>6}"
          f"{'s':>8}{'images/s':>10}{'vs batch 1':>11}"
          f"{'GFLOP/s':>9}{'of peak':>9}{'heatmap diff':>14}")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        ldm = make_ldm(args.size, dtype)
        full, trunc = unet_gflops(ldm, args.size, False), unet_gflops(ldm, args.size, True)
        per_image = last * full + captured * trunc  # U-Net GFLOP per heatmap (step counts x pass cost)
        for attention, invariant in [(a, i == "on") for a in args.attention.split(",")
                                     for i in args.invariant.split(",")]:
            engine = LdmEngine(ldm, settings, batch_size=args.chunk, attention=attention,
                               batch_invariant=invariant)
            engine.maps_batch(images[:1], [[PROMPT]])  # warm-up
            base_rate, base_map = None, None
            for n in batches:
                engine.forget()
                started = time.perf_counter()
                maps = engine.maps_batch(images[:n], [[PROMPT]] * n)
                seconds = time.perf_counter() - started
                rate = n / seconds
                if base_rate is None:
                    base_rate, base_map = rate, maps[0][0]
                diff = float(np.abs(maps[0][0] - base_map).max())
                gflops = per_image * n / seconds
                print(f"{dtype_name:<9}{attention:<10}{'on' if invariant else 'off':>10}{n:>6}"
                      f"{seconds:>8.1f}{rate:>10.4f}"
                      f"{rate / base_rate:>10.2f}x{gflops:>9.0f}{gflops / peaks[dtype_name]:>9.0%}"
                      f"{diff:>14.1e}", flush=True)
        del ldm
    print(f"U-Net work per heatmap: {last} unconditional passes + {captured} conditional passes stopped "
          f"after the last captured layer ({trunc / full:.1%} of a pass); the step-count ceiling of the fast "
          f"path over the reference (2 x {settings.inference_steps} full passes): "
          f"{2 * settings.inference_steps / (last + captured * trunc / full):.2f}x")
    print(f"load average after: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default=None, help="images per call to sweep, e.g. 1,2,4,8 (issue 28)")
    parser.add_argument("--dtypes", default="float32", help="with --batch: float32,bfloat16")
    parser.add_argument("--attention", default="sdpa", help="with --batch: sdpa,explicit")
    parser.add_argument("--invariant", default="on,off",
                        help="with --batch: batch_invariant on (the default: same bits at any batch), off")
    parser.add_argument("--inference-steps", type=int, default=100, help="with --batch: schedule length")
    parser.add_argument("--chunk", type=int, default=10, help="with --batch: conditional passes per call")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--ground-rss", action="store_true")
    parser.add_argument("--orders", default="inversion,denoising",
                        help="capture orders to time; the last one is the default's for the bfloat16 line")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch:
        batch_sweep(args)
        return
    settings = HeatmapSettings(otsu=False)
    image = np.random.default_rng(0).random((300, 260)).astype(np.float32)

    print(f"machine: {platform.machine()} {cpu_model()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}")
    print(f"settings: image {args.size}x{args.size} (latent {args.size // 8}), "
          f"{settings.inference_steps} DDIM steps, captured steps "
          f"{settings.capture_steps[0]}..{settings.capture_steps[-1]} (default order "
          f"{settings.capture_order}), "
          f"{len(settings.layers)} layers, real-size architecture with random weights")
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"matmul peak: float32 {peak32:.0f} GFLOP/s, bfloat16 {peak16:.0f} GFLOP/s")

    ldm = make_ldm(args.size, torch.float32)
    full, trunc = unet_gflops(ldm, args.size, False), unet_gflops(ldm, args.size, True)
    print(f"U-Net forward at batch 1: {full:.1f} GFLOP full, {trunc:.1f} GFLOP stopped after the last "
          f"captured layer ({trunc / full:.1%})")
    print(f"{'path':<34}{'s/heatmap':>10}{'U-Net GFLOP':>13}{'GFLOP/s':>9}{'of fp32 peak':>14}")
    for order in args.orders.split(","):
        ordered = settings.with_changes(capture_order=order)
        engine = LdmEngine(ldm, ordered)
        started = time.perf_counter()
        reference = reference_maps(engine, image, [PROMPT])[0]
        t_ref = time.perf_counter() - started
        started = time.perf_counter()
        fast = engine.maps(image, [PROMPT])[0]
        t_fast = time.perf_counter() - started
        rel = float(np.abs(fast - reference).max() / np.abs(reference).max())
        steps, captured = ordered.inference_steps, len(ordered.capture_steps)
        last = max(ordered.inversion_steps)  # inversion passes before the last captured step
        gf_ref = steps * 2 * full
        gf_fast = last * full + captured * trunc
        window = ordered.window()["timesteps"]
        for name, seconds, gflop in ((f"reference float32 ({order})", t_ref, gf_ref),
                                     (f"fast float32 ({order})", t_fast, gf_fast)):
            rate = gflop / seconds
            print(f"{name:<34}{seconds:>10.1f}{gflop:>13.0f}{rate:>9.0f}{rate / peak32:>14.0%}")
        print(f"{order} order (t = {window[0]}..{window[1]}, {last} inversion passes): fast vs reference "
              f"{t_ref / t_fast:.2f}x faster (U-Net work alone allows {gf_ref / gf_fast:.2f}x); max relative "
              f"difference {rel:.1e}")
    engine = LdmEngine(ldm, settings)
    fast = engine.maps(image, [PROMPT])[0]

    ldm16 = make_ldm(args.size, torch.bfloat16)
    engine16 = LdmEngine(ldm16, settings)
    started = time.perf_counter()
    fast16 = engine16.maps(image, [PROMPT])[0]
    t16 = time.perf_counter() - started
    pearson = float(np.corrcoef(fast16.ravel(), fast.ravel())[0, 1])
    rate16 = gf_fast / t16
    print(f"{'fast bfloat16':<22}{t16:>10.1f}{gf_fast:>13.0f}{rate16:>9.0f}{rate16 / peak16:>14.0%}"
          "  (of bf16 peak)")
    print(f"bfloat16 fast vs float32 reference ({args.orders.split(',')[-1]}): {t_ref / t16:.2f}x faster; vs "
          f"float32 fast: "
          f"{t_fast / t16:.2f}x; agreement with float32: Pearson {pearson:.4f}, Otsu-mask IoU "
          f"{otsu_iou(fast16, fast):.3f}")

    if args.ground_rss:
        del ldm, ldm16, engine, engine16
        with tempfile.TemporaryDirectory() as tmp:
            rss, seconds = ground_peak_rss(Path(tmp))
        print(f"cxrg ground --model ldm-frozen at 512 (real-size random weights, float32): peak RSS "
              f"{rss:.2f} GiB, {seconds:.0f} s wall")


if __name__ == "__main__":
    main()
