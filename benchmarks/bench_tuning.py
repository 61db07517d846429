"""Tuning speed: seconds per sample of the fast path against the naive loop, with equal gradients.

Real-size architecture with random weights (U-Net 263.6 M parameters, SD 2.1-size text encoder) at a
reduced input size (`--size`, default 256), the paper's schedule (100 DDIM steps, 30 captured steps, 4
layers). Naive: re-invert the image every step, one timestep at a time through the full U-Net. Fast: the
cached trajectory, the captured steps batched in chunks, the U-Net stopped after the last captured layer.
Prints both times, the ratio, the gradients' agreement, peak memory, and the estimate for the paper's full
run (6,480 samples, one epoch) on this machine. With --learnability it also runs the phantom experiment.

    python benchmarks/bench_tuning.py [--size 256] [--learnability]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from cxrg.anatomy.lut import Lut
from cxrg.runs import RunDir
from cxrg.tuning.naive import naive_sample_gradients
from cxrg.tuning.phantoms import write_phantom_set
from cxrg.tuning.trainer import Trainer, TuneConfig

PAPER_SAMPLES = 6480


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--learnability", action="store_true")
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ldm import cpu_model, make_ldm

    print(f"machine: {platform.machine()} {cpu_model()} cpus={os.cpu_count()} torch={torch.__version__}")
    print(f"settings: image {args.size}x{args.size}, 100 DDIM steps, 30 captured steps, 4 layers, chunk "
          f"{args.chunk}, real-size architecture with random weights, float32")
    ldm = make_ldm(args.size, torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_phantom_set(Path(tmp) / "ph", 2, Lut.default(), size=args.size)
        from cxrg.tuning.data import read_manifest

        data = read_manifest(manifest, manifest.parent / "images")
        config = TuneConfig(steps=1, chunk=args.chunk)
        run = RunDir(Path(tmp) / "run", "bench", {})
        trainer = Trainer(ldm, Lut.default(), data, config, run, Path(tmp) / "cache")
        sample = data.samples[0]
        started = time.perf_counter()
        trainer.cache.latents(trainer.pixels(sample))
        t_cache = time.perf_counter() - started
        trainer.codebook.rows.grad = None
        started = time.perf_counter()
        trainer.sample_gradients(sample, step=0)
        t_fast = time.perf_counter() - started
        fast_grad = trainer.codebook.rows.grad.clone()
        rss_fast = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        trainer.codebook.rows.grad = None
        started = time.perf_counter()
        naive_sample_gradients(trainer, sample, step=0)
        t_naive = time.perf_counter() - started
        rel = float((trainer.codebook.rows.grad - fast_grad).abs().max() / fast_grad.abs().max())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
        run.close()
    print(f"{'path':<34}{'s/sample':>10}")
    print(f"{'naive (re-invert, one t at a time)':<34}{t_naive:>10.1f}")
    print(f"{'fast (cached trajectory, batched)':<34}{t_fast:>10.1f}   ratio {t_naive / t_fast:.1f}x")
    print(f"trajectory, once per image (first epoch): {t_cache:.1f} s; gradients agree to {rel:.1e} "
          "(relative)")
    print(f"peak resident memory: {rss_fast:.2f} GiB after the fast step, {rss:.2f} GiB after the naive one")
    hours = (PAPER_SAMPLES * (t_fast + t_cache)) / 3600
    print(f"estimate, paper's run ({PAPER_SAMPLES} samples, 1 epoch) at {args.size}px on this machine: "
          f"{hours:.1f} h (x about {(512 / args.size) ** 2:.0f} at 512 px: the U-Net cost grows with pixels)")
    if args.learnability:
        from cxrg.tuning.learnability import run_experiment

        with tempfile.TemporaryDirectory() as tmp:
            result = run_experiment(Path(tmp))
        print("learnability (phantoms, tiny LDM at 128 px):")
        for line in result.lines():
            print("  " + line)


if __name__ == "__main__":
    main()
