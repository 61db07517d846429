"""`cxrg tune` as a library call (`cxrg.tuning.run(...)`): resolve the settings, read the manifest, load the
LDM, train resumably, install the result. The command only parses."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cxrg.runs import say


def install_embeddings(result: Path, target: Path) -> Path | None:
    """Copy the tuned embeddings to the default place; a file already there is kept beside it with its time
    (tuned_embeddings.<YYYYmmdd-HHMMSS>.safetensors) and the message says so. Returns the kept file."""
    from cxrg.runs import atomic_write_bytes

    target.parent.mkdir(parents=True, exist_ok=True)
    kept = None
    if target.is_file():
        if target.read_bytes() == result.read_bytes():
            say(f"the default tuned embeddings are already this result: {target}")
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(target.stat().st_mtime))
        kept = target.with_name(f"{target.stem}.{stamp}{target.suffix}")
        n = 1
        while kept.exists():
            kept = target.with_name(f"{target.stem}.{stamp}-{n}{target.suffix}")
            n += 1
        os.replace(target, kept)
    atomic_write_bytes(target, result.read_bytes())
    say(f"installed as the default tuned embeddings: {target}"
        + (f" (the previous ones are kept as {kept.name})" if kept else ""))
    return kept


TRACKERS = ("none", "tensorboard")


def make_tracker(name: str, folder: Path, config: dict):
    """An accelerate tracker writing under `folder`, with the run's settings stored as hyperparameters."""
    from cxrg.errors import UsageError

    if name != "tensorboard":
        raise UsageError(f"unknown tracker {name!r}", hint=f"choose {' or '.join(TRACKERS)}")
    try:
        from accelerate.tracking import TensorBoardTracker
        tracker = TensorBoardTracker("tune", str(folder))
        if hasattr(tracker, "start"):  # accelerate >= 1.2 opens the writer here
            tracker.start()
    except ImportError as exc:
        raise UsageError("--log-with tensorboard needs the tensorboard package",
                         hint="pip install 'cxrg[tracking]'") from exc
    flat = {k: (v if isinstance(v, int | float | str | bool) else str(v)) for k, v in config.items()}
    tracker.store_init_configuration(flat)
    return tracker


def run(
        manifest: Path | None = None,
        images: Path | None = None,
        out: Path | None = None,
        weights: Path | None = None,
        lut: Path | None = None,
        steps: int | None = None,
        epochs: float | None = None,
        lr: float = 0.0001,
        alpha: float = 0.1,
        epsilon: float = 1e-05,
        jitter: float = 0.05,
        div_weight: float = 1.0,
        target_norm: str | None = None,
        div_pairs: str = 'all',
        probe: int = 8,
        probe_every: int = 50,
        probe_patience: int = 100,
        log_with: str = 'none',
        shared_tokens: str = 'trainable',
        seed: int = 0,
        checkpoint_every: int = 50,
        chunk: int = 10,
        cache: Path | None = None,
        cache_dtype: str = 'float32',
        device: str | None = None,
        autocast: str = 'none',
        checkpointing: bool = False,
        restart: bool = False,
        install: bool = True,
        protocol: str | None = None,
) -> None:
    """Tune the anatomy rows of the codebook (L_div + L_loc, paper eq. 2-4); writes OUT/tuned_embeddings."""
    from cxrg.anatomy.lut import Lut, active_lut
    from cxrg.config import check_number, load_config, weights_root
    from cxrg.errors import UsageError
    from cxrg.ldm.config import HeatmapSettings
    from cxrg.ldm.loading import load_ldm
    from cxrg.ldm.weights import WeightPaths
    from cxrg.progress import progress
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
    from cxrg.tuning.losses import TARGET_NORMS

    if target_norm is not None and target_norm not in TARGET_NORMS:
        raise UsageError(f"unknown --target-norm {target_norm!r}", hint=f"choose {' or '.join(TARGET_NORMS)}")
    from cxrg.tuning.losses import DIV_PAIRS

    if div_pairs not in DIV_PAIRS:
        raise UsageError(f"unknown --div-pairs {div_pairs!r}", hint=f"choose {' or '.join(DIV_PAIRS)}")
    if log_with not in TRACKERS:
        raise UsageError(f"unknown --log-with {log_with!r}", hint=f"choose {' or '.join(TRACKERS)}")
    if steps is not None and epochs is not None:
        raise UsageError("give one of --steps and --epochs")
    if steps is None and epochs is None:
        epochs = 1.0
    check_number("--lr", lr, above=0)
    check_number("--alpha", alpha, minimum=0)
    check_number("--epsilon", epsilon, minimum=0)
    check_number("--jitter", jitter, minimum=0, maximum=0.5)
    check_number("--div-weight", div_weight, minimum=0)
    if epochs is not None:
        check_number("--epochs", epochs, above=0)
    if cache_dtype not in ("float32", "float16") or autocast not in ("none", "bfloat16", "float16"):
        raise UsageError("--cache-dtype is float32 or float16; --autocast none, bfloat16 or float16")
    data = read_manifest(manifest, images)
    dist = Distributed.from_environment(device)
    if steps is not None:
        total = steps
    else:
        assert epochs is not None
        from cxrg.tuning.trainer import split_probe

        trained = len(split_probe(data.samples, probe, seed)[1])
        total = max(1, round(epochs * trained / dist.world))
    from cxrg.protocol import resolve

    resolved = resolve("tune", {"g_normalisation": target_norm}, protocol, cfg)  # DDIM grid (below [ldm]), G
    target_norm = resolved["g_normalisation"]
    schedule = {"timestep_spacing": resolved["timestep_spacing"],
                **{k: v for k, v in cfg.table("ldm").items()
                   if k not in ("otsu", "batch", "upsampling", "attention", "batch_invariant")}}
    config = TuneConfig(steps=total, lr=lr, alpha=alpha, epsilon=epsilon, jitter=jitter, seed=seed,
                        checkpoint_every=checkpoint_every, chunk=chunk, cache_dtype=cache_dtype,
                        autocast=autocast, checkpointing=checkpointing, div_weight=div_weight,
                        shared_tokens=shared_tokens, target_norm=target_norm, div_pairs=div_pairs,
                        probe=probe,
                        probe_every=probe_every, probe_patience=probe_patience,
                        settings=HeatmapSettings(otsu=False).with_overrides(schedule))
    table = Lut.load(lut) if lut else active_lut(weights)
    ldm = load_ldm(weights, device=device)
    if dist.world > 1 and device == "cuda":
        ldm = load_ldm(weights, device=f"cuda:{dist.accelerator.local_process_index}")
    run = RunDir(out, "tune", {"manifest": str(manifest.resolve()), "images": str(images.resolve()),
                               "weights": str(weights_root(weights)), "lut": table.metadata.get("source"),
                               "processes": dist.world, **config.to_dict(),
                               "window": config.settings.window(), "settings": cfg.record(),
                               **resolved.record()},
                 lock=dist.main)
    try:
        inputs = {"manifest": file_fingerprint(manifest, content=True), "images": str(images.resolve())}
        if restart:
            for name in ("checkpoint.json", "checkpoint.safetensors", "losses.csv"):
                run.file(name).unlink(missing_ok=True)
        for sample_id, reason in data.skipped:
            run.logger.warning("skipped %s: %s", sample_id, reason)
        for sample_id, prompt, other in data.kept:
            run.logger.info("%s: prompt %r kept as written (cxrg's canonical reading: %r)", sample_id, prompt,
                            other)
        for sample_id, text, prompt in data.read:
            run.logger.info("%s: free text %r read as %r", sample_id, text, prompt)
        if dist.main:
            say(f"manifest: {data.rows} rows, {len(data.samples)} samples, {len(data.skipped)} skipped"
                + (" (reasons in log.txt)" if data.skipped else "")
                + (f"; {len(data.kept)} vocabulary prompts kept as written though their canonical reading "
                   "differs" if data.kept else "")
                + (f"; {len(data.read)} read from free text" if data.read else "")
                + (" (each in log.txt)" if data.kept or data.read else ""))
        trainer = Trainer(ldm, table, data, config, run, cache or out / "trajectories", dist, inputs=inputs)
        if trainer.probe_samples and dist.main:
            say(f"probe: {len(trainer.probe_samples)} samples held out of training, recorded every "
                f"{probe_every} steps")
        trainer.notify = say if dist.main else None
        if log_with != "none" and dist.main:
            trainer.tracker = make_tracker(log_with, run.file("tracking"), config.to_dict())
        if trainer.resume() and dist.main:
            say(f"continuing the run in {out} at step {trainer.step} of {config.steps} "
                "(--restart to start over)")
        with progress("tune", total=config.steps, unit="steps", enabled=dist.main) as bar:
            bar.update(done=trainer.step)
            result = trainer.train(progress=lambda step, loss: bar.update(done=step, info=f"loss {loss:.4f}"))
        if trainer.tracker is not None:
            trainer.tracker.finish()
        if dist.main:
            say(f"tuned embeddings: {result}; losses in {run.file('losses.csv')} and loss_curve.png; "
                f"trajectory cache {trainer.cache.hits} hits, {trainer.cache.misses} computed")
            if install:
                install_embeddings(result, WeightPaths(weights_root(weights)).tuned_embeddings)
    finally:
        run.close()
    if os.environ.get("WORLD_SIZE", "1") != "1" and dist.accelerator is not None:
        dist.accelerator.end_training()
