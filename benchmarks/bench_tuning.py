"""Tuning speed: seconds per sample of the fast path against the naive loop, with equal gradients.

Real-size architecture with random weights (U-Net 263.6 M parameters, SD 2.1-size text encoder) at a
reduced input size (`--size`, default 256), the paper's schedule (100 DDIM steps, 30 captured steps, 4
layers). Naive: re-invert the image every step, one timestep at a time through the full U-Net. Fast: the
cached trajectory, the captured steps batched in chunks, the U-Net stopped after the last captured layer.
Prints both times, the ratio, the gradients' agreement, peak memory, and the estimate for the paper's full
run (6,480 samples, one epoch) on this machine. With --learnability it also runs the phantom experiment.

    python benchmarks/bench_tuning.py [--size 256] [--learnability]

`--first-epoch N` (issue 28) times the first epoch's trajectories of N phantom images instead: one image
at a time (the trainer before batching: a trajectory computed when its step needs it) against
`precompute_trajectories` with batches of `--trajectory-batch` images, in one run, with the largest
relative difference of the cached latents; `--inference-steps S` shrinks the schedule keeping its shape.

    python benchmarks/bench_tuning.py --first-epoch 4 --size 128 [--trajectory-batch 4]
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


def first_epoch(args) -> None:
    """Trajectory cost of a first epoch: one image at a time against batched precomputation."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_ldm import load_average, make_ldm, scaled_settings

    from cxrg.tuning.data import read_manifest
    from cxrg.tuning.trajectories import precompute_trajectories

    print(f"machine: {platform.machine()} cpus={os.cpu_count()} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}")
    print(f"load average before: {load_average()}")
    settings = scaled_settings(args.inference_steps)
    print(f"settings: {args.first_epoch} phantom images {args.size}x{args.size}, {settings.inference_steps} "
          f"DDIM steps, captured {settings.capture_steps[0]}..{settings.capture_steps[-1]} "
          f"({settings.capture_order} order), real-size architecture with random weights, float32")
    ldm = make_ldm(args.size, torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_phantom_set(Path(tmp) / "ph", args.first_epoch, Lut.default(), size=args.size)
        data = read_manifest(manifest, manifest.parent / "images")
        config = TuneConfig(steps=len(data.samples), settings=settings)
        results = {}
        warm_run = RunDir(Path(tmp) / "warm", "bench", {})
        warm = Trainer(ldm, Lut.default(), data, config, warm_run, Path(tmp) / "w")
        with torch.inference_mode():  # warm-up: kernels and allocator, outside both timings
            warm.engine.trajectory(warm.pixels(data.samples[0]))
        warm.run.close()
        for label, batch in (("one image at a time", 1), (f"batched ({args.trajectory_batch} images)",
                                                          args.trajectory_batch)):
            run = RunDir(Path(tmp) / f"run{batch}", "bench", {})
            trainer = Trainer(ldm, Lut.default(), data, config, run, Path(tmp) / f"cache{batch}")
            trainer.cache.batch_size = batch
            started = time.perf_counter()
            if batch == 1:
                for sample in data.samples:  # the trainer before issue 28: computed as each step needs it
                    trainer.cache.latents(trainer.pixels(sample))
            else:
                precompute_trajectories(trainer, range(0, len(data.samples)))
            seconds = time.perf_counter() - started
            results[batch] = (seconds, [trainer.cache.latents(trainer.pixels(s)) for s in data.samples])
            run.close()
            print(f"{label:<28}{seconds:>8.1f} s  {seconds / len(data.samples):>7.1f} s/image", flush=True)
    (t1, single), (tb, batched) = results[1], results[args.trajectory_batch]
    rel = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(batched, single, strict=True))
    print(f"first-epoch trajectories: batched {t1 / tb:.2f}x faster; cached latents agree to {rel:.1e} "
          "(relative)")
    per_sample = tb / len(data.samples)
    print(f"estimate, the paper's {PAPER_SAMPLES} trajectories at {args.size}px on this machine: "
          f"{PAPER_SAMPLES * t1 / len(data.samples) / 3600:.1f} h one at a time, "
          f"{PAPER_SAMPLES * per_sample / 3600:.1f} h batched")
    print(f"load average after: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-epoch", type=int, default=0,
                        help="images: time the first epoch's trajectories")
    parser.add_argument("--trajectory-batch", type=int, default=4)
    parser.add_argument("--inference-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=10)
    parser.add_argument("--learnability", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.first_epoch:
        first_epoch(args)
        return
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
