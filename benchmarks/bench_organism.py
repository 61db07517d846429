"""The model organism: the paper's three claims in miniature, the per-layer diagnostic, bf16 vs fp32.

Runs on the committed organism weights (cxrg/organism/weights) or --weights DIR, in --work DIR:

1. claims (cxrg.organism.experiment.run_claims): `cxrg bench`, `cxrg tune`, `cxrg classify` as
   subprocesses on the held-out phantom sets, with the layer and window chosen on `val` (VAL_CHOSEN)
   beside the defaults; tuning steps and lr were fixed beforehand;
2. `cxrg ldm diagnose` on the validation set and on the test set (CNR/mIoU per layer and timestep window);
3. bfloat16 against float32 on the trained weights: Pearson of the un-thresholded maps and IoU of the Otsu
   masks, on the first --pairs test samples;
4. figures for benchmarks/RESULTS.md and docs (docs/images/organism_*.png).

    python benchmarks/bench_organism.py [--work runs/organism] [--skip-claims] [--figures docs/images]
    python benchmarks/bench_organism.py --val-sweep [--work runs/organism-sweep]   # issue 23: val only
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import cpu_model  # noqa: E402


def bf16_agreement(weights: Path, annotations: Path, images: Path, pairs: int) -> dict[str, float]:
    from cxrg.bench.datasets import read_ms_cxr
    from cxrg.images import read_image
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.ldm.heatmap import LdmEngine, otsu_threshold
    from cxrg.ldm.loading import load_ldm

    settings = HeatmapSettings(otsu=False)
    engines = {name: LdmEngine(load_ldm(weights, dtype=name), settings) for name in ("float32", "bfloat16")}
    pearson, iou = [], []
    for sample in read_ms_cxr(annotations, images).samples[:pairs]:
        image = read_image(sample.image_path)
        a, b = (engines[name].maps(image, [sample.prompt])[0].ravel() for name in ("float32", "bfloat16"))
        pearson.append(float(np.corrcoef(a, b)[0, 1]))
        ma, mb = a > otsu_threshold(a), b > otsu_threshold(b)
        iou.append(float((ma & mb).sum() / max((ma | mb).sum(), 1)))
    return {"pairs": len(pearson), "pearson_mean": float(np.mean(pearson)),
            "pearson_min": float(np.min(pearson)), "iou_mean": float(np.mean(iou)),
            "iou_min": float(np.min(iou))}


def examples_figure(work: Path, path: Path, count: int = 5) -> None:
    """Test phantoms with their boxes, and the maps of ldm-frozen, prior and ldm (tuned) as `cxrg bench`
    kept them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from cxrg.bench.datasets import read_ms_cxr
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.images import read_image
    from cxrg.runs import save_figure

    split = work / "sets" / "test"
    samples = read_ms_cxr(split / "annotations.csv", split / "images").samples
    picks = [samples[i] for i in (0, 1, 13, 15, 17)][:count]
    columns = [("image", None, None), ("ldm-frozen\n(before tuning)", work / "runs" / "bench-test-frozen",
                                       "ldm-frozen"),
               ("prior", work / "runs" / "bench-test-frozen", "prior"),
               ("ldm (after tuning)", work / "runs" / "bench-test-unperturbed", "ldm")]
    if (work / "runs" / "bench-test-valselected").is_dir():
        columns.append(("ldm-frozen, val-chosen\nlayer and steps", work / "runs" / "bench-test-valselected",
                        "ldm-frozen"))
    fig, axes = plt.subplots(len(picks), len(columns), figsize=(2.1 * len(columns), 2.2 * len(picks)))
    for r, sample in enumerate(picks):
        image = read_image(sample.image_path)
        for c, (title, run, model) in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1)
            if run is not None:
                heat, _ = HeatmapStore(run).load(model, sample.sample_id)
                ax.imshow(heat.astype(np.float32), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            for x0, y0, x1, y1 in sample.boxes:
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(sample.prompt, fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=60)


def claims_figure(values: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cxrg.runs import save_figure

    bars = [("prior", values["zero_shot"]["prior"]), ("oracle", values["zero_shot"]["oracle"]),
            ("ldm-frozen", values["zero_shot"]["ldm-frozen"])]
    for how in values["tuning"]:
        bars.append((f"{how}\nfrozen", values["tuning"][how]["ldm-frozen"]))
        bars.append((f"{how}\ntuned", values["tuning"][how]["ldm"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
    for ax, metric in zip(axes, ("cnr", "miou"), strict=True):
        means = [b[metric] for _, b in bars]
        err = [[b[metric] - b[f"{metric}_low"] for _, b in bars],
               [b[f"{metric}_high"] - b[metric] for _, b in bars]]
        ax.bar(range(len(bars)), means, yerr=err, color=["grey", "silver"] + ["tab:blue"] * (len(bars) - 2))
        ax.set_xticks(range(len(bars)), [name for name, _ in bars], fontsize=7)
        name = "CNR" if metric == "cnr" else "mIoU"
        ax.set_title(f"{name} on the off-atlas test phantoms (95 % CI)", fontsize=9)
        ax.axhline(0, color="k", lw=0.5)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/organism"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--skip-claims", action="store_true")
    parser.add_argument("--diagnose-limit", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--figures", type=Path, default=None, help="also write docs figures here")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (slimmed from 2000)")
    from cxrg.organism.experiment import CHOSEN_TUNE_FLAGS

    parser.add_argument("--tune-flags", default=" ".join(CHOSEN_TUNE_FLAGS),
                        help="cxrg tune loss flags (chosen on val: docs/organism.md)")
    parser.add_argument("--perturbations", default="unperturbed,swapped")
    parser.add_argument("--classify", action="store_true", help="also claim 3 (grounded classification)")
    parser.add_argument("--skip-extras", action="store_true", help="skip `ldm diagnose` and bf16 vs fp32")
    parser.add_argument("--val-sweep", action="store_true",
                        help="only issue 23's sweep of tuning lr / jitter / div weight on val (SWEEP_ROWS)")
    parser.add_argument("--sweep-lrs", default=None,
                        help="with --val-sweep: only these learning rates (w = 0, jitter 0.05), e.g. 3e-1,1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.organism.experiment import LDM_TABLE, TUNE_LR, TUNE_STEPS, run_claims
    from cxrg.organism.weights import committed_weights

    weights = args.weights or committed_weights()
    print(f"machine: {cpu_model()}, {platform.machine()}, torch {torch.__version__}, 1 thread per process")
    settings = HeatmapSettings().with_overrides(LDM_TABLE)
    print(f"organism: {weights}; heatmap settings: {json.dumps(settings.window())}")
    print(f"tuning: {TUNE_STEPS} steps, lr {TUNE_LR}, {args.tune_flags} (chosen on val); seeds: phantoms per "
          f"set (cxrg.organism.heldout.SEEDS), tune seed 0, bootstrap seed 0, {args.resamples} resamples")
    started = time.perf_counter()
    work = args.work
    if args.val_sweep:
        from cxrg.organism.experiment import SWEEP_ROWS, val_sweep
        from cxrg.organism.heldout import write_sets

        write_sets(work / "sets")
        rows = SWEEP_ROWS if args.sweep_lrs is None else tuple(
            (f"w0 lr {lr}", float(lr), 0.05, 0.0) for lr in args.sweep_lrs.split(","))
        val_sweep(work, weights, work / "sets", rows=rows, resamples=args.resamples)
        print(f"val sweep: {time.perf_counter() - started:.0f} s")
        return
    if not args.skip_claims:
        report = run_claims(work, weights, resamples=args.resamples, ldm_table=LDM_TABLE,
                            tune_extra=tuple(args.tune_flags.split()),
                            perturbations=tuple(args.perturbations.split(",")), classify=args.classify,
                            with_val_chosen=False)
        values = report.values
    else:
        values = json.loads((work / "claims.json").read_text())
    if args.skip_extras:
        (work / "results.json").write_text(json.dumps(values, indent=2, default=float) + "\n")
        if args.figures:
            args.figures.mkdir(parents=True, exist_ok=True)
            examples_figure(work, args.figures / "organism_examples.png")
            claims_figure(values, args.figures / "organism_claims.png")
        print(f"total {time.perf_counter() - started:.0f} s")
        return
    for split in ("val", "test"):
        out = work / "runs" / f"diagnose-{split}"
        data = work / "sets" / split
        subprocess.run([sys.executable, "-m", "cxrg", "ldm", "diagnose", "--annotations",
                        str(data / "annotations.csv"), "--images", str(data / "images"), "--weights",
                        str(work / "weights" / "unperturbed"), "--limit", str(args.diagnose_limit), "--out",
                        str(out)], check=True)
    agreement = bf16_agreement(work / "weights" / "unperturbed", work / "sets" / "test" / "annotations.csv",
                               work / "sets" / "test" / "images", args.pairs)
    print(f"bfloat16 vs float32 ({agreement['pairs']} test phantoms, trained weights, Otsu off for Pearson): "
          f"Pearson mean {agreement['pearson_mean']:.4f} (min {agreement['pearson_min']:.4f}); Otsu-mask IoU "
          f"mean {agreement['iou_mean']:.4f} (min {agreement['iou_min']:.4f})")
    values["bf16"] = agreement
    (work / "results.json").write_text(json.dumps(values, indent=2, default=float) + "\n")
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        examples_figure(work, args.figures / "organism_examples.png")
        claims_figure(values, args.figures / "organism_claims.png")
        for split in ("val", "test"):
            shutil.copy(work / "runs" / f"diagnose-{split}" / "diagnose.png",
                        args.figures / f"organism_diagnose_{split}.png")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
