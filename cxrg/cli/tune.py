"""`cxrg tune`: prompt-tune the anatomy token embeddings of the LDM on a curated manifest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def tune(
    manifest: Annotated[Path | None, typer.Option(help="manifest.csv or .jsonl from `cxrg curate` (default: "
                                                  "cxrg.toml [tune] manifest).")] = None,
    images: Annotated[Path | None, typer.Option(help="Folder the manifest's image_path values are relative "
                                                "to (default: cxrg.toml [tune] or [mimic-cxr] images).")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default: cxrg.toml [tune] out, else "
                                             "runs/tune). A folder holding a checkpoint is continued.")]
    = None,
    weights: Annotated[Path | None, typer.Option(help="Weights folder (default: cxrg.toml, $CXRG_HOME).")]
    = None,
    lut: Annotated[Path | None, typer.Option(help="Anatomical LUT JSON (default: the one in force).")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Tuning steps (one sample each).")] = None,
    epochs: Annotated[float | None, typer.Option(min=0.01, help="Or: passes over the manifest.")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-4,
    alpha: Annotated[float, typer.Option(help="Weight of the Gaussian in the target (eq. 3).")] = 0.1,
    epsilon: Annotated[float, typer.Option(help="Support threshold of the Gaussian (eq. 3).")] = 1e-5,
    jitter: Annotated[float, typer.Option(help="mu/sigma jitter, fraction of the image size.")] = 0.05,
    div_weight: Annotated[float, typer.Option(min=0.0, help="Weight of L_div (paper: 1; 0 turns it off, "
                                              "Appendix H.2).")] = 1.0,
    shared_tokens: Annotated[str, typer.Option(help="Sub-tokens shared by a location and a pathology "
                                               "(cardi, ome, gal, y; ple, ural): trainable (default) or "
                                               "frozen.")] = "trainable",
    seed: Annotated[int, typer.Option(help="Seed of the sample order and the jitter.")] = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps.")] = 50,
    chunk: Annotated[int, typer.Option(min=1, help="Captured timesteps per U-Net call.")] = 10,
    cache: Annotated[Path | None, typer.Option(help="Trajectory cache folder (default OUT/trajectories).")]
    = None,
    cache_dtype: Annotated[str, typer.Option(help="float32 or float16 for the cached latents.")] = "float32",
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda, ...")] = None,
    autocast: Annotated[str, typer.Option(help="Mixed precision of the U-Net passes: none, bfloat16, "
                                          "float16 (GPU).")] = "none",
    checkpointing: Annotated[bool, typer.Option(help="Gradient checkpointing of the U-Net's encoder blocks "
                                                "(less memory, more compute; for large GPUs runs).")] = False,
    restart: Annotated[bool, typer.Option(help="Start over even if OUT holds a checkpoint (it is replaced).")]
    = False,
    install: Annotated[bool, typer.Option(help="Install the result as the default tuned embeddings "
                                          "(<weights>/tuned_embeddings.safetensors).")] = True,
) -> None:
    """Tune the anatomy rows of the codebook (L_div + L_loc, paper eq. 2-4); writes OUT/tuned_embeddings."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cxrg.anatomy.lut import Lut, active_lut
    from cxrg.cli import say
    from cxrg.config import load_config
    from cxrg.errors import UsageError
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.ldm.loading import load_ldm
    from cxrg.ldm.weights import WeightPaths, weights_root
    from cxrg.runs import RunDir, file_fingerprint
    from cxrg.tuning.data import read_manifest
    from cxrg.tuning.trainer import Distributed, Trainer, TuneConfig

    cfg = load_config(cli={"weights": weights, "lut": lut, "device": device, "tune.manifest": manifest,
                           "tune.images": images, "tune.out": out})
    manifest = Path(cfg.require("tune.manifest", "--manifest"))
    images = Path(cfg.get("tune.images") or cfg.require("mimic-cxr.images", "--images"))
    out = Path(cfg.get("tune.out") or Path("runs") / "tune")
    weights, lut, device = cfg.get("weights"), cfg.get("lut"), cfg.get("device", "cpu")
    if shared_tokens not in ("trainable", "frozen"):
        raise UsageError(f"unknown --shared-tokens {shared_tokens!r}", hint="choose trainable or frozen")
    if steps is not None and epochs is not None:
        raise UsageError("give one of --steps and --epochs")
    if steps is None and epochs is None:
        epochs = 1.0
    if cache_dtype not in ("float32", "float16") or autocast not in ("none", "bfloat16", "float16"):
        raise UsageError("--cache-dtype is float32 or float16; --autocast none, bfloat16 or float16")
    data = read_manifest(manifest, images)
    dist = Distributed.from_environment(device)
    if steps is not None:
        total = steps
    else:
        assert epochs is not None
        total = max(1, round(epochs * len(data.samples) / dist.world))
    schedule = {k: v for k, v in cfg.table("ldm").items() if k not in ("otsu", "batch")}
    config = TuneConfig(steps=total, lr=lr, alpha=alpha, epsilon=epsilon, jitter=jitter, seed=seed,
                        checkpoint_every=checkpoint_every, chunk=chunk, cache_dtype=cache_dtype,
                        autocast=autocast, checkpointing=checkpointing, div_weight=div_weight,
                        shared_tokens=shared_tokens,
                        settings=HeatmapSettings(otsu=False).with_overrides(schedule))
    table = Lut.load(lut) if lut else active_lut(weights)
    ldm = load_ldm(weights, device=device)
    if dist.world > 1 and device == "cuda":
        ldm = load_ldm(weights, device=f"cuda:{dist.accelerator.local_process_index}")
    run = RunDir(out, "tune", {"manifest": str(manifest.resolve()), "images": str(images.resolve()),
                               "weights": str(weights_root(weights)), "lut": table.metadata.get("source"),
                               "processes": dist.world, **config.to_dict(),
                               "window": config.settings.window(), "settings": cfg.record()},
                 lock=dist.main)
    try:
        inputs = {"manifest": file_fingerprint(manifest, content=True), "images": str(images.resolve())}
        if restart:
            for name in ("checkpoint.json", "checkpoint.safetensors", "losses.csv"):
                run.file(name).unlink(missing_ok=True)
        for sample_id, reason in data.skipped:
            run.logger.warning("skipped %s: %s", sample_id, reason)
        if dist.main:
            say(f"manifest: {data.rows} rows, {len(data.samples)} samples, {len(data.skipped)} skipped"
                + (" (reasons in log.txt)" if data.skipped else ""))
        trainer = Trainer(ldm, table, data, config, run, cache or out / "trajectories", dist, inputs=inputs)
        if trainer.resume() and dist.main:
            say(f"continuing the run in {out} at step {trainer.step} of {config.steps} "
                "(--restart to start over)")
        err = Console(stderr=True)
        with Progress(TextColumn("tune"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn(), console=err,
                      transient=True, disable=not (err.is_terminal and dist.main)) as bar:
            task = bar.add_task("steps", total=config.steps, completed=trainer.step, loss="-")
            result = trainer.train(
                progress=lambda step, loss: bar.update(task, completed=step, loss=f"{loss:.4f}"))
        if dist.main:
            say(f"tuned embeddings: {result}; losses in {run.file('losses.csv')} and loss_curve.png; "
                f"trajectory cache {trainer.cache.hits} hits, {trainer.cache.misses} computed")
            if install:
                target = WeightPaths(weights_root(weights)).tuned_embeddings
                target.parent.mkdir(parents=True, exist_ok=True)
                from cxrg.runs import atomic_write_bytes

                atomic_write_bytes(target, result.read_bytes())
                say(f"installed as the default tuned embeddings: {target}")
    finally:
        run.close()
    if os.environ.get("WORLD_SIZE", "1") != "1" and dist.accelerator is not None:
        dist.accelerator.end_training()
