"""The GPU check, prepared for the day a GPU is lent: one run, one table, ratios within the run.

At the real architecture's size with random weights (MONAI bundle U-Net, autoencoder, SD 2.1-size text
encoder): environment facts; seconds per heatmap for the fast and the reference path in float32, bfloat16
and float16 (agreement with float32: Pearson and Otsu-mask IoU); peak GPU memory per path; images per
second for a bench-like batch (several images, three prompts each); one tuning step, fast against naive
(with the gradients' agreement); the classifier's U-Net passes per second. `--device cpu --size 64` is the
dry mode the slow tests run (minutes on 2 cores); on a GPU: `benchmarks/gpu_suite.sh`.

Batching across images (issue 28), `--batches 1,2,4,8,16`: images/s of the fast path against the number of
images per call, in every dtype, with SDPA on and off (`--sdpa-batches`: the batch sizes timed with the
explicit path too), the peak memory of each, the batch the automatic choice takes (cxrg.bench.batching),
and from these the estimated wall time of the paper's full tuning run (6,480 samples, one epoch: a
trajectory per image at the best batch, plus a fast tuning step) and of a full MS-CXR bench with 6 models
on one GPU (the two LDM models measured here; oracle and prior cost nothing; BioViL, BioViL-T and MAIRA-2
are plugins whose time is not measured here and is left out), against the paper's "about 3 h on an RTX
3090" for tuning. `--compile` also times the U-Net under torch.compile (on/off in the same run).

    python benchmarks/bench_gpu.py [--device cuda] [--size 512] [--images 8] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model  # noqa: E402

from cxrg.anatomy.lut import Lut  # noqa: E402
from cxrg.ldm.config import HeatmapSettings, LdmArchitecture  # noqa: E402
from cxrg.ldm.ddim import alphas_cumprod  # noqa: E402
from cxrg.ldm.heatmap import LdmEngine, otsu_threshold, reference_maps  # noqa: E402
from cxrg.ldm.loading import LoadedLdm, text_encoder_fingerprint  # noqa: E402
from cxrg.ldm.tiny import build_random, sd21_text_config  # noqa: E402
from cxrg.ldm.tokenizer import load_tokenizer  # noqa: E402

PROMPTS = ["left lower pleural effusion", "right apical pneumothorax", "bilateral lower pneumonia"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def settings(args, otsu: bool = False) -> HeatmapSettings:
    """The paper's heatmap settings, or at --inference-steps S the same window shape (30 %..60 % of S):
    the dry mode's shorter schedule."""
    steps = args.inference_steps
    if steps == 100:
        return HeatmapSettings(otsu=otsu)
    return HeatmapSettings(otsu=otsu, inference_steps=steps,
                           capture_steps=tuple(range(round(0.3 * steps), round(0.6 * steps))))


def make_ldm(size: int, dtype: torch.dtype, device: torch.device) -> LoadedLdm:
    arch = LdmArchitecture(image_size=size)
    autoencoder, unet, text = build_random(arch, sd21_text_config(), seed=0)
    for module in (autoencoder, unet, text):
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return LoadedLdm(autoencoder, unet, text, load_tokenizer(), arch, alphas_cumprod(arch.scheduler),
                     device, dtype, text_encoder_fingerprint(text))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    """(result, seconds, peak memory in GiB or None) of one call."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    started = time.perf_counter()
    result = fn()
    sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 1024 ** 3 if device.type == "cuda" else None
    return result, seconds, peak


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    pearson = float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    ma, mb = a > otsu_threshold(a), b > otsu_threshold(b)
    return pearson, float((ma & mb).sum() / max((ma | mb).sum(), 1))


def environment(device: torch.device) -> dict:
    facts = {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_model(),
             "cpus": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 1024 ** 3, 1),
                  "cuda": torch.version.cuda, "bf16": torch.cuda.is_bf16_supported()}
    return facts


def heatmap_rows(args, device, image) -> list[dict]:
    rows, reference_f32 = [], None
    for name in args.dtypes:
        ldm = make_ldm(args.size, DTYPES[name], device)
        engine = LdmEngine(ldm, settings(args, otsu=False), batch_size=args.batch)
        engine.maps(image, PROMPTS[:1])  # warm-up (kernels, caches)
        engine.forget()
        fast, t_fast, mem_fast = timed(device, lambda e=engine: e.maps(image, PROMPTS[:1])[0])
        row = {"what": f"heatmap fast {name}", "seconds": t_fast, "peak_gib": mem_fast}
        if name == "float32" or args.reference_all:
            slow, t_ref, mem_ref = timed(device, lambda e=engine: reference_maps(e, image, PROMPTS[:1])[0])
            rows.append({"what": f"heatmap reference {name}", "seconds": t_ref, "peak_gib": mem_ref})
            row["ratio"] = t_ref / t_fast
            scale = max(float(np.abs(slow).max()), 1e-12)
            row["max_rel_diff_vs_reference"] = float(np.abs(fast - slow).max() / scale)
            if name == "float32":
                reference_f32 = fast
        if reference_f32 is not None and name != "float32":
            row["pearson_vs_fp32"], row["otsu_iou_vs_fp32"] = agreement(fast, reference_f32)
        rows.append(row)
        print(table([row]), flush=True)
        del engine, ldm
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def batch_rows(args, device, images) -> tuple[list[dict], dict]:
    """Images/s against images per call, per dtype and attention path (batch_invariant, the default, and
    without it, at the --sdpa-batches sizes); the best float32 rate."""
    rows, best = [], {}
    batches = [b for b in args.batches if b <= len(images)]
    for name in args.dtypes:
        ldm = make_ldm(args.size, DTYPES[name], device)
        for attention, invariant in (("sdpa", True), ("sdpa", False), ("explicit", True)):
            full_sweep = attention == "sdpa" and invariant
            sizes = batches if full_sweep else [b for b in batches if b in args.sdpa_batches]
            engine = LdmEngine(ldm, settings(args, otsu=False), batch_size=args.batch, attention=attention,
                               batch_invariant=invariant)
            engine.maps_batch(images[:1], [PROMPTS[:1]])  # warm-up
            base = None
            for n in sizes:
                engine.forget()
                _, seconds, peak = timed(device, lambda e=engine, n=n: e.maps_batch(images[:n],
                                                                                    [PROMPTS[:1]] * n))
                rate = n / seconds
                base = base or rate
                label = attention + ("" if invariant else " not-invariant")
                row = {"what": f"batch {n} {name} {label}", "seconds": seconds, "images_per_s": rate,
                       "ratio": rate / base, "peak_gib": peak}
                rows.append(row)
                print(table([row]), flush=True)
                if full_sweep:
                    best[name] = max(best.get(name, 0.0), rate)
            del engine
        if device.type == "cuda" and name == args.dtypes[0]:
            from cxrg.bench.batching import resolve_batch_size

            holder = type("Model", (), {"engine": LdmEngine(ldm, settings(args, otsu=False))})()
            n, why = resolve_batch_size("auto", {"ldm": holder}, str(device))
            rows.append({"what": f"automatic batch size ({name})", "chosen": n, "note": why})
            print(f"automatic batch size: {why}", flush=True)
        del ldm
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows, best


def compile_rows(args, device, images) -> list[dict]:
    """The fast path with the U-Net under torch.compile against without, at the largest batch."""
    n = min(max(args.batches), len(images))
    ldm = make_ldm(args.size, DTYPES[args.bench_dtype], device)
    engine = LdmEngine(ldm, settings(args, otsu=False), batch_size=args.batch)
    run = lambda: engine.forget() or engine.maps_batch(images[:n], [PROMPTS[:1]] * n)  # noqa: E731
    run()
    _, eager, _ = timed(device, run)
    original = ldm.unet.forward
    started = time.perf_counter()
    ldm.unet.forward = torch.compile(original, dynamic=False, backend=args.compile_backend)
    try:
        run()  # compiles (the capture passes stop early: they stay eager in the captured blocks)
        compile_seconds = time.perf_counter() - started
        _, compiled, _ = timed(device, run)
    except Exception as exc:  # no compiler, an unsupported op: reported, not fatal
        return [{"what": f"torch.compile off, batch {n}", "seconds": eager, "images_per_s": n / eager},
                {"what": f"torch.compile on, batch {n}",
                 "note": f"failed: {type(exc).__name__}: {exc}"[:200]}]
    finally:
        ldm.unet.forward = original
    return [{"what": f"torch.compile off, batch {n}", "seconds": eager, "images_per_s": n / eager},
            {"what": f"torch.compile on, batch {n}", "seconds": compiled, "images_per_s": n / compiled,
             "ratio": eager / compiled, "note": f"compiling took {compile_seconds:.0f} s"}]


PAPER_TUNING_SAMPLES = 6480
MS_CXR_PAIRS = 1162
"""MS-CXR's phrase-box pairs (an upper bound for MS-CXR-loc, which drops phrases without a location)."""


def estimate_rows(rows: list[dict], best: dict) -> list[dict]:
    """Wall-time estimates from the measured rates (one GPU, the best measured batch, float32)."""
    rate = best.get("float32") or next(iter(best.values()), None)
    step = next((r["seconds"] for r in rows if r["what"] == "tuning step fast"), None)
    out = []
    if rate and step is not None:
        hours = PAPER_TUNING_SAMPLES * (1 / rate + step) / 3600
        out.append({"what": f"estimate: paper's tuning run ({PAPER_TUNING_SAMPLES} samples, 1 epoch)",
                    "hours": hours, "note": "trajectories batched + fast steps; the paper: about 3 h on "
                                            "an RTX 3090"})
    if rate:
        hours = 2 * MS_CXR_PAIRS / rate / 3600
        out.append({"what": f"estimate: MS-CXR bench, 6 models ({MS_CXR_PAIRS} pairs)", "hours": hours,
                    "note": "ldm + ldm-frozen measured (one prompt per image: an upper bound); oracle, prior "
                            "~0; BioViL, BioViL-T, MAIRA-2 not included"})
    for row in out:
        print(f"{row['what']}: {row['hours']:.2f} h ({row['note']})", flush=True)
    return out


def bench_rows(args, device, images) -> list[dict]:
    ldm = make_ldm(args.size, DTYPES[args.bench_dtype], device)
    engine = LdmEngine(ldm, settings(args, otsu=True), batch_size=args.batch)
    engine.maps(images[0], PROMPTS)
    _, seconds, peak = timed(device, lambda: [engine.maps(im, PROMPTS) for im in images])
    return [{"what": f"bench {len(images)} images x {len(PROMPTS)} prompts {args.bench_dtype}",
             "seconds": seconds, "images_per_s": len(images) / seconds, "peak_gib": peak}]


def tuning_rows(args, device) -> list[dict]:
    from cxrg.runs import RunDir
    from cxrg.tuning.data import read_manifest
    from cxrg.tuning.naive import naive_sample_gradients
    from cxrg.tuning.phantoms import write_phantom_set
    from cxrg.tuning.trainer import Trainer, TuneConfig

    ldm = make_ldm(args.size, torch.float32, device)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_phantom_set(Path(tmp) / "ph", 2, Lut.default(), size=args.size)
        data = read_manifest(manifest, manifest.parent / "images")
        run = RunDir(Path(tmp) / "run", "bench", {})
        config = TuneConfig(steps=1, chunk=args.batch, settings=settings(args, otsu=False))
        trainer = Trainer(ldm, Lut.default(), data, config, run, Path(tmp) / "cache")
        sample = data.samples[0]
        trainer.cache.latents(trainer.pixels(sample))
        trainer.codebook.rows.grad = None
        _, t_fast, mem_fast = timed(device, lambda: trainer.sample_gradients(sample, step=0))
        fast = trainer.codebook.rows.grad.clone()
        trainer.codebook.rows.grad = None
        _, t_naive, mem_naive = timed(device, lambda: naive_sample_gradients(trainer, sample, step=0))
        naive = trainer.codebook.rows.grad.clone()
        run.close()
    diff = float((fast - naive).abs().max() / naive.abs().max().clamp_min(1e-30))
    return [{"what": "tuning step naive", "seconds": t_naive, "peak_gib": mem_naive},
            {"what": "tuning step fast", "seconds": t_fast, "peak_gib": mem_fast, "ratio": t_naive / t_fast,
             "max_rel_grad_diff": diff}]


def classify_rows(args, device, image) -> list[dict]:
    from cxrg.classify.diffusion import DrawSettings, draw_noise, error_maps

    ldm = make_ldm(args.size, DTYPES[args.bench_dtype], device)
    engine = LdmEngine(ldm, settings(args))
    draws = DrawSettings(args.draws, 0, 999, args.batch * 3)
    with torch.inference_mode():
        latent = engine.encode_image(engine.model_input(image))
        contexts, _ = engine.contexts(["no acute cardiopulmonary process", "pneumothorax"])
        t, eps = draw_noise(0, "bench", draws, tuple(latent.shape[1:]))
        run = lambda: error_maps(ldm.unet, latent, contexts, t, eps, ldm.alphas,  # noqa: E731
                                 ldm.architecture.scheduler["prediction_type"], draws.batch_size)
        run()
        _, seconds, peak = timed(device, run)
    passes = 2 * args.draws
    return [{"what": f"classifier U-Net passes {args.bench_dtype}", "seconds": seconds,
             "passes_per_s": passes / seconds, "peak_gib": peak}]


def table(rows: list[dict]) -> str:
    keys = ["seconds", "ratio", "peak_gib", "images_per_s", "passes_per_s", "max_rel_diff_vs_reference",
            "pearson_vs_fp32", "otsu_iou_vs_fp32", "max_rel_grad_diff", "chosen", "hours", "note"]
    used = [k for k in keys if any(k in r for r in rows)]
    lines = ["| what | " + " | ".join(used) + " |", "|---|" + "---:|" * len(used)]
    for r in rows:
        cells = ["" if r.get(k) is None else (f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]))
                 for k in used]
        lines.append(f"| {r['what']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--dtypes", default="float32,bfloat16,float16")
    parser.add_argument("--bench-dtype", default="float32")
    parser.add_argument("--reference-all", action="store_true", help="reference path in every dtype")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: "
                        "batches,tuning,heatmaps,bench,classify")
    parser.add_argument("--batches", default="1,2,4,8,16", help="images per call to sweep (issue 28)")
    parser.add_argument("--sdpa-batches", default="1,8",
                        help="batch sizes also timed with explicit attention")
    parser.add_argument("--inference-steps", type=int, default=100,
                        help="DDIM steps (100: the paper's; fewer: a shorter dry run, same window shape)")
    parser.add_argument("--compile", action="store_true", help="also time the U-Net under torch.compile")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend (the dry mode: eager)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.sdpa_batches = [int(b) for b in args.sdpa_batches.split(",") if b]
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
        torch.set_num_threads(1)  # the dry mode shares 2 cores; a second thread only adds contention
    rng = np.random.default_rng(0)
    count = max(args.images, *args.batches) if "batches" not in args.skip else args.images
    images = [rng.random((int(args.size * 1.2), args.size)).astype(np.float32) for _ in range(count)]
    facts = environment(device)
    print("environment: " + ", ".join(f"{k}={v}" for k, v in facts.items()), flush=True)
    window = settings(args)
    print(f"settings: {args.size} px, {window.inference_steps} DDIM steps, {len(window.capture_steps)} "
          f"captured steps (noise -> image), 4 layers, "
          f"random weights of the real architecture, batch {args.batch}", flush=True)
    skip = set(args.skip.split(","))
    result = {"environment": facts, "settings": vars(args) | {"out": str(args.out)}, "rows": []}

    def keep(new: list[dict]) -> None:  # written after every part: a timeout keeps what was measured
        result["rows"] += new
        if args.out:
            args.out.write_text(json.dumps(result, indent=2, default=str))

    best: dict = {}
    if "batches" not in skip:
        new, best = batch_rows(args, device, images)
        keep(new)
    if "tuning" not in skip:
        keep(tuning_rows(args, device))
    if best:
        keep(estimate_rows(result["rows"], best))
    if "heatmaps" not in skip:
        keep(heatmap_rows(args, device, images[0]))
    if "bench" not in skip:
        keep(bench_rows(args, device, images[:args.images]))
    if "classify" not in skip:
        keep(classify_rows(args, device, images[0]))
    if args.compile:
        keep(compile_rows(args, device, images))
    print(table(result["rows"]), flush=True)
    return result


if __name__ == "__main__":
    main()
