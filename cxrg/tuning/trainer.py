"""`cxrg tune`: weakly supervised tuning of the anatomy rows of the codebook (paper Section 3.3).

One step = one sample (batch 1): its cached trajectory latents at the captured steps, the prompt encoded
through the codebook, the conditional U-Net passes of the captured steps batched (in chunks; the losses
are means over (t, l), so chunk gradients weighted by chunk size add up to the full batch's exactly), the
U-Net stopped after the last captured layer, L = L_div + L_loc (losses.py) against the prompt's Gaussian
rendered at the attention resolution with mu and sigma jittered by +-5 % of the image size. Gradients are
masked to the anatomy rows, so pathology and special rows stay bit-identical; Adam updates.

Randomness (sample order per epoch, jitter) is drawn from generators seeded by (seed, step), never from
a running global state, so `--resume` continues exactly: N steps + resume + N steps equals 2N straight.

The checkpoint is one atomic unit: checkpoint.safetensors holds the rows, Adam's moments and, in its
metadata, the step, the settings, the fingerprint of the inputs and the loss rows; it is replaced in one
rename. checkpoint.json and losses.csv are human-readable copies written after it and never read back, so
a kill between any two writes resumes into exactly the uninterrupted run. A checkpoint made from other
inputs (manifest content, images root, weights, LUT) or settings is refused with the names that changed.
Several processes (`accelerate launch -m cxrg tune` or `torchrun -m cxrg tune`) split each step's samples
and average the gradients (data parallel); one process needs no launcher.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrg.anatomy.lut import Lut
from cxrg.errors import CxrgError, UsageError
from cxrg.images import read_image
from cxrg.ldm.attention import capture, run_until_captured
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine
from cxrg.ldm.loading import LoadedLdm
from cxrg.ldm.text import Codebook, content_positions, encode, tokenize
from cxrg.runs import (
    RunDir,
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    changed_parts,
    file_fingerprint,
    fingerprint,
    save_figure,
)
from cxrg.tuning.data import Manifest, TuningSample
from cxrg.tuning.losses import layer_token_maps, scale_gaussian, tuning_losses
from cxrg.tuning.trajectories import TrajectoryCache

HEALTH_FIELDS = ("probe_l_loc", "probe_l_div", "grad_ratio")
LOSS_FIELDS = ("step", "sample_id", "loss", "l_div", "l_loc", "seconds", *HEALTH_FIELDS)
CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_META = "checkpoint.json"
OUTPUT = "tuned_embeddings.safetensors"


@dataclass(frozen=True)
class TuneConfig:
    steps: int
    lr: float = 1e-4
    alpha: float = 0.1
    epsilon: float = 1e-5
    jitter: float = 0.05
    seed: int = 0
    checkpoint_every: int = 50
    chunk: int = 10
    cache_dtype: str = "float32"
    autocast: str = "none"  # "bfloat16" or "float16": mixed precision for the U-Net passes
    checkpointing: bool = False  # recompute the encoder blocks in the backward pass to save memory
    div_weight: float = 1.0  # weight of L_div (Appendix H.2: 0 turns it off)
    shared_tokens: str = "trainable"  # sub-tokens shared by a location and a pathology: trainable or frozen
    target_norm: str = "peak"  # G of eq. 3 with peak 1 or as a density (losses.TARGET_NORMS)
    div_pairs: str = "all"  # "across-phrases": a labelled departure, L_div without same-phrase pairs
    probe: int = 0  # samples held out of the manifest (seeded) whose L_loc/L_div are recorded unjittered
    probe_every: int = 25  # steps between probe records
    probe_patience: int = 100  # warn when probe L_loc has not fallen after this many steps
    settings: HeatmapSettings = field(default_factory=lambda: HeatmapSettings(otsu=False))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["settings"] = self.settings.to_dict()
        return data


@dataclass
class Distributed:
    """This process's place among the data-parallel workers (one worker when not launched)."""

    rank: int = 0
    world: int = 1
    accelerator: Any = None

    @classmethod
    def from_environment(cls, device: str) -> Distributed:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=device == "cpu")
        return cls(accelerator.process_index, accelerator.num_processes, accelerator)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return tensor
        return self.accelerator.reduce(tensor, reduction="mean")

    def barrier(self) -> None:
        if self.world > 1:
            self.accelerator.wait_for_everyone()


def phrase_groups(tokenizer, prompt: str) -> list[int]:
    """For each non-special token of a vocabulary prompt, which phrase it belongs to: one id per location,
    one for the pathology ("left lower and right apical pneumonia" -> left, lower: 0; right, ap, ical: 1;
    pneumonia: 2). CLIP's tokenizer splits words independently, so the phrases' tokens concatenate to the
    prompt's."""
    from cxrg.vocab import PATHOLOGY_TEXT, Prompt

    parsed = Prompt.parse(prompt)
    phrases = [*parsed.locations, PATHOLOGY_TEXT[parsed.pathology]]
    if parsed.locations == ("cardiomegaly",):
        phrases = [PATHOLOGY_TEXT[parsed.pathology]]
    groups = [k for k, phrase in enumerate(phrases)
              for _ in tokenizer(phrase, add_special_tokens=False).input_ids]
    ids, spans = tokenize(tokenizer, [prompt])
    if len(groups) != len(content_positions(tokenizer, ids[0].tolist(), spans[0])):
        raise UsageError(f"cannot split prompt {prompt!r} into phrases for --div-pairs across-phrases")
    return groups


def split_probe(samples: list[TuningSample], probe: int, seed: int
                ) -> tuple[list[TuningSample], list[TuningSample]]:
    """(probe, training) samples: `probe` drawn by a seeded permutation and held out of training, at most a
    fifth of the manifest; with no probe the training list is the manifest, in its order."""
    count = min(probe, len(samples) // 5)
    if count <= 0:
        return [], list(samples)
    chosen = set(np.random.default_rng([seed, 11]).permutation(len(samples))[:count].tolist())
    return ([s for k, s in enumerate(samples) if k in chosen],
            [s for k, s in enumerate(samples) if k not in chosen])


def sample_for(step: int, rank: int, world: int, n: int, seed: int) -> int:
    """Which sample worker `rank` uses at `step`: a seeded permutation per epoch, split across workers."""
    position = step * world + rank
    epoch, offset = divmod(position, n)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return int(order[offset])


def precompute_trajectories(trainer: Any, steps: range) -> int:
    """Before a trainer's `steps`: the trajectories of the samples this process uses in them, computed in
    batches (TrajectoryCache.precompute); the steps then only read the cache. The batches are fixed runs
    of `batch_size` consecutive steps (0..B-1, B..2B-1, ...), computed whole, so a resumed run stores
    exactly what the uninterrupted run stores (resume stays bit-exact)."""
    samples = trainer.train_samples  # the probe's samples are not trained on
    size = max(1, trainer.cache.batch_size)
    if not len(steps):
        return 0
    first, last = steps.start // size, (steps.stop - 1) // size

    def group(g: int) -> list[torch.Tensor]:
        indices = dict.fromkeys(sample_for(step, trainer.dist.rank, trainer.dist.world, len(samples),
                                           trainer.config.seed) for step in range(g * size, (g + 1) * size))
        return [trainer.pixels(samples[i]) for i in indices]

    return trainer.cache.precompute(group(g) for g in range(first, last + 1))


class Trainer:
    def __init__(self, ldm: LoadedLdm, lut: Lut, manifest: Manifest, config: TuneConfig, run: RunDir,
                 cache_dir: Path, distributed: Distributed | None = None,
                 inputs: dict[str, str] | None = None) -> None:
        self.ldm = ldm
        self.lut = lut
        self.manifest = manifest
        self.config = config
        self.run = run
        self.dist = distributed or Distributed()
        # batch_invariant off: the tuner's trajectories come in one fixed grouping per run (and its gradient
        # passes are batched anyway), so per-image kernels would only slow it; the committed organism
        # embeddings were made this way and reproduce bit for bit
        self.engine = LdmEngine(ldm, config.settings, batch_invariant=False)
        self.cache = TrajectoryCache(self.engine, cache_dir, config.cache_dtype)
        self.codebook = Codebook.from_vocabulary(ldm.tokenizer, ldm.text_encoder,
                                                 config.shared_tokens).to(ldm.device)
        self.optimizer = torch.optim.Adam([self.codebook.rows], lr=config.lr)
        self.step = 0
        self.losses: list[dict[str, Any]] = []
        self.probe_samples, self.train_samples = split_probe(manifest.samples, config.probe, config.seed)
        self.tracker: Any = None
        """An accelerate tracker (GeneralTracker: log(values, step), finish()) the losses also go to."""
        self.notify: Callable[[str], None] | None = None
        """Where health messages go besides log.txt (the command prints them)."""
        self._warned = False
        self._pixels: dict[str, torch.Tensor] = {}
        self.times = torch.tensor([self.engine.timesteps[i] for i in config.settings.inversion_steps],
                                  dtype=torch.long, device=ldm.device)
        self.inputs = {"samples": self.data_fingerprint(), "lut": fingerprint(lut.to_dict()),
                       "text_encoder": str(ldm.fingerprint),
                       "unet_autoencoder": fingerprint(self.cache.model_key), **(inputs or {})}
        """Fingerprints of what determines the run (the samples and their files, the LUT, the weights, and
        what the command adds: manifest content, images root); a checkpoint from others is refused."""

    # -- one sample ---------------------------------------------------------------------------------------
    def pixels(self, sample: TuningSample) -> torch.Tensor:
        key = str(sample.image_path)  # by file, never by sample_id (the trajectory cache keys by content)
        if key not in self._pixels:
            self._pixels[key] = self.engine.model_input(read_image(sample.image_path)).cpu()
        return self._pixels[key].to(self.ldm.device, self.ldm.dtype)

    def gaussian(self, sample: TuningSample, side: int, step: int | None) -> torch.Tensor:
        """G of eq. 3 at the maps' resolution, jittered per step (`step` None: unjittered, for probes)."""
        jitter = self.config.jitter > 0 and step is not None
        rng = np.random.default_rng([self.config.seed, step or 0, self.dist.rank, 7])
        target = self.lut.render(sample.locations, shape=side, jitter=rng if jitter else None,
                                 jitter_fraction=self.config.jitter)
        g = torch.from_numpy(np.ascontiguousarray(target)).reshape(-1).to(self.ldm.device)
        return scale_gaussian(g, self.config.target_norm)

    def groups(self, sample: TuningSample) -> list[int] | None:
        """Phrase ids of the sample's tokens for div_pairs "across-phrases"; None for the paper's eq. 2."""
        if self.config.div_pairs == "all":
            return None
        return phrase_groups(self.ldm.tokenizer, sample.prompt)

    def token_maps(self, sample: TuningSample, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """(T, L, D, S) attention of the prompt's non-special tokens at captured steps [start, stop), with
        gradients to the codebook when grad mode is on: what the losses read."""
        latents = self.cache.latents(self.pixels(sample))
        ids, spans = tokenize(self.ldm.tokenizer, [sample.prompt])
        positions = content_positions(self.ldm.tokenizer, ids[0].tolist(), spans[0])
        layers = self.config.settings.layers
        stop = len(self.config.settings.inversion_steps) if stop is None else stop
        with self._autocast():
            context = encode(self.ldm.text_encoder, ids, self.codebook).to(self.ldm.dtype)
            with capture(self.ldm.unet, layers, keep_grad=torch.is_grad_enabled(),
                         stop_after_last=True) as got:
                run_until_captured(self.ldm.unet, latents[start:stop], timesteps=self.times[start:stop],
                                   context=context.expand(stop - start, -1, -1))
        return layer_token_maps([got.stacked(name).float().mean(dim=1)[..., positions] for name in layers])

    def sample_gradients(self, sample: TuningSample, step: int,
                         loss_hook: Callable | None = None) -> tuple[float, float, float]:
        """Accumulate d L / d codebook for one sample into `codebook.rows.grad`; returns (L, L_div, L_loc)."""
        total = len(self.config.settings.inversion_steps)
        sums = [0.0, 0.0, 0.0]
        for start in range(0, total, self.config.chunk):
            stop = min(start + self.config.chunk, total)
            k = stop - start
            maps = self.token_maps(sample, start, stop)  # (k, L, D, S)
            side = int(round(math.sqrt(maps.shape[2])))
            losses = tuning_losses(maps, self.gaussian(sample, side, step), self.config.alpha,
                                   self.config.epsilon, self.config.div_weight, self.groups(sample))
            if loss_hook is not None:
                losses = loss_hook(losses, step)
            (losses.total * (k / total)).backward()
            for i, value in enumerate((losses.total, losses.div, losses.loc)):
                sums[i] += float(value.detach()) * k / total
        return sums[0], sums[1], sums[2]

    def _autocast(self):
        import contextlib

        stack = contextlib.ExitStack()
        if self.config.checkpointing:
            stack.enter_context(checkpointed_down_blocks(self.ldm.unet, self.config.settings.layers))
        if self.config.autocast != "none":
            dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}[self.config.autocast]
            stack.enter_context(torch.autocast(device_type=self.ldm.device.type, dtype=dtype))
        return stack

    # -- the loop -------------------------------------------------------------------------------------------
    def train(self, progress: Callable[[int, float], None] | None = None,
              loss_hook: Callable | None = None) -> Path:
        samples = self.train_samples
        mask = self.codebook.gradient_mask().to(self.ldm.device)
        if self.probe_samples and self.step == 0 and not any(int(r["step"]) == 0 for r in self.losses):
            self.losses.append({"step": 0, **self.probe()})
            self._report(self.losses[-1])
        precompute_trajectories(self, range(self.step, self.config.steps))  # batched, before the steps
        while self.step < self.config.steps:
            started = time.perf_counter()
            step = self.step
            index = sample_for(step, self.dist.rank, self.dist.world, len(samples), self.config.seed)
            sample = samples[index]
            self.optimizer.zero_grad(set_to_none=False)
            if self.codebook.rows.grad is None:
                self.codebook.rows.grad = torch.zeros_like(self.codebook.rows)
            loss, div, loc = self.sample_gradients(sample, step, loss_hook)
            grad = self.dist.mean(self.codebook.rows.grad)
            values = self.dist.mean(torch.tensor([loss, div, loc], device=self.ldm.device))
            loss, div, loc = (float(v) for v in values)
            if not (math.isfinite(loss) and bool(torch.isfinite(grad).all())):
                kept = self._last_checkpoint_step()
                raise CxrgError(f"the loss became {loss} at step {step + 1} (sample {sample.sample_id}); "
                                f"stopped without applying it",
                                where=str(self.run.path),
                                hint=(f"the last good checkpoint (step {kept}) is kept; " if kept else "")
                                + "lower --lr or check that sample, then rerun with --resume")
            self.codebook.rows.grad = grad * mask  # only anatomy rows move
            self.optimizer.step()
            self.step += 1
            row = {"step": self.step, "sample_id": sample.sample_id, "loss": repr(loss), "l_div": repr(div),
                   "l_loc": repr(loc), "seconds": f"{time.perf_counter() - started:.3f}"}
            if self.probe_samples and (self.step % self.config.probe_every == 0
                                       or self.step == self.config.steps):
                row.update(self.probe())
            self.losses.append(row)
            self._report(row)
            if progress is not None:
                progress(self.step, loss)
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.save_checkpoint()
        return self.finish()

    # -- health -------------------------------------------------------------------------------------------
    def probe(self) -> dict[str, str]:
        """L_loc and L_div on the probe samples without jitter (mean), and the ratio of the gradient norms of
        w * L_div and L_loc on the trainable rows: how the two terms pull (issue 23 found L_div's pull 2-5x
        L_loc's, in conflict with it, so L_loc did not fall)."""
        rows = self.codebook.rows
        mask = self.codebook.gradient_mask().to(rows.device)
        total = len(self.config.settings.inversion_steps)
        sums, g_div, g_loc = [0.0, 0.0], torch.zeros_like(rows), torch.zeros_like(rows)
        for sample in self.probe_samples:
            for start in range(0, total, self.config.chunk):
                stop = min(start + self.config.chunk, total)
                weight = (stop - start) / total / len(self.probe_samples)
                maps = self.token_maps(sample, start, stop)
                g = self.gaussian(sample, int(round(math.sqrt(maps.shape[2]))), None)
                losses = tuning_losses(maps, g, self.config.alpha, self.config.epsilon,
                                       self.config.div_weight, self.groups(sample))
                div = _grad(self.config.div_weight * losses.div * weight, rows)
                loc = _grad(losses.loc * weight, rows)
                g_div += div
                g_loc += loc
                sums[0] += float(losses.loc.detach()) * weight
                sums[1] += float(losses.div.detach()) * weight
        ratio = float((g_div * mask).norm() / (g_loc * mask).norm().clamp_min(1e-30))
        return {"probe_l_loc": repr(sums[0]), "probe_l_div": repr(sums[1]), "grad_ratio": repr(ratio)}

    def _report(self, row: dict[str, Any]) -> None:
        """Send a loss row to the tracker; on probe rows, a line for people and the stalled-L_loc warning."""
        if not self.dist.main:
            return
        numbers = {k: float(v) for k, v in row.items() if k in ("loss", "l_div", "l_loc", *HEALTH_FIELDS)
                   and v not in ("", None)}
        if self.tracker is not None:
            self.tracker.log(numbers, step=int(row["step"]))
        if "probe_l_loc" not in numbers:
            return
        first = next(float(r["probe_l_loc"]) for r in self.losses if r.get("probe_l_loc") not in ("", None))
        line = (f"step {row['step']}/{self.config.steps}: probe L_loc {numbers['probe_l_loc']:.4f} (start "
                f"{first:.4f}), L_div {numbers['probe_l_div']:.4f}, gradient ratio |w dL_div| / |dL_loc| "
                f"{numbers['grad_ratio']:.2f}")
        self.run.logger.info(line)
        if self.notify is not None:
            self.notify(line)
        step = int(row["step"])
        if step >= self.config.probe_patience and not self._warned and numbers["probe_l_loc"] >= first:
            self._warned = True
            warning = (f"probe L_loc has not fallen after {step} steps ({first:.4f} -> "
                       f"{numbers['probe_l_loc']:.4f}): the rows do not move the attention towards the named "
                       f"anatomy. L_div pulls {numbers['grad_ratio']:.1f}x as hard as L_loc; try "
                       "--div-weight 0 (the paper's Appendix H.2 ablation) or another --lr, and check the "
                       "validation maps")
            self.run.logger.warning(warning)
            if self.notify is not None:
                self.notify("warning: " + warning)

    # -- files ----------------------------------------------------------------------------------------------
    def _last_checkpoint_step(self) -> int | None:
        meta = self._read_checkpoint()
        return None if meta is None else int(meta[0]["step"])

    def save_checkpoint(self) -> None:
        """One atomic write holds everything a resume reads; the two copies after it are for people."""
        from safetensors.torch import save

        if self.dist.main:
            state = self.optimizer.state[self.codebook.rows]
            tensors = {"rows": self.codebook.rows.detach().cpu().contiguous()}
            if state:
                tensors["exp_avg"] = state["exp_avg"].cpu().contiguous()
                tensors["exp_avg_sq"] = state["exp_avg_sq"].cpu().contiguous()
            adam_step = float(state["step"]) if state else 0.0
            meta = {"step": self.step, "adam_step": adam_step, "config": self.config.to_dict(),
                    "inputs": self.inputs, "losses": self.losses,
                    "note": "randomness is drawn per step from (seed, step); nothing else to restore"}
            atomic_write_bytes(self.run.file(CHECKPOINT),
                               save(tensors, metadata={"cxrg_checkpoint": json.dumps(meta)}))
            atomic_write_csv(self.run.file("losses.csv"), LOSS_FIELDS, self.losses)
            atomic_write_json(self.run.file(CHECKPOINT_META), {k: v for k, v in meta.items() if k != "losses"}
                              | {"copy_of": CHECKPOINT})
            self.run.logger.info("checkpoint at step %d", self.step)
        self.dist.barrier()

    def _read_checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = self.run.file(CHECKPOINT)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                text = (handle.metadata() or {}).get("cxrg_checkpoint")
            tensors = load_file(str(path))
        except Exception as exc:
            raise CxrgError(f"cannot read the checkpoint: {exc}", where=str(path),
                            hint="pass --restart to start over") from exc
        if text is None:  # cxrg 0.1: the settings were in checkpoint.json beside it
            legacy = self.run.file(CHECKPOINT_META)
            if not legacy.is_file():
                return None
            meta = json.loads(legacy.read_text())
            meta.setdefault("losses", None)
            return meta, tensors
        return json.loads(text), tensors

    def resume(self) -> bool:
        """Continue from the run folder's checkpoint; False when there is none."""
        got = self._read_checkpoint()
        if got is None:
            return False
        meta, tensors = got
        where = str(self.run.file(CHECKPOINT))
        saved = {k: v for k, v in meta["config"].items() if k != "steps"}
        now = {k: v for k, v in self.config.to_dict().items() if k != "steps"}
        if json.loads(json.dumps(saved)) != json.loads(json.dumps(now)):
            changed = sorted(k for k in now if saved.get(k) != json.loads(json.dumps(now[k])))
            raise UsageError(f"this run folder holds a checkpoint made with other settings "
                             f"({', '.join(changed)})", where=where,
                             hint="continue with the same settings, or pass --restart or a new --out")
        if "inputs" in meta and meta["inputs"] != self.inputs:
            changed = changed_parts(meta["inputs"], self.inputs)
            raise UsageError("this run folder holds a checkpoint made from other inputs "
                             f"({', '.join(changed)} "
                             "changed)", where=where,
                             hint="rerun with the same inputs, or pass --restart or a new --out")
        with torch.no_grad():
            self.codebook.rows.copy_(tensors["rows"].to(self.codebook.rows.device))
        if "exp_avg" in tensors:
            self.optimizer.state[self.codebook.rows] = {
                "step": torch.tensor(meta["adam_step"]),
                "exp_avg": tensors["exp_avg"].to(self.ldm.device),
                "exp_avg_sq": tensors["exp_avg_sq"].to(self.ldm.device)}
        self.step = int(meta["step"])
        if meta.get("losses") is not None:
            self.losses = [dict(row) for row in meta["losses"]]
        else:
            losses_csv = self.run.file("losses.csv")
            if losses_csv.is_file():
                with losses_csv.open(newline="") as handle:
                    self.losses = [row for row in csv.DictReader(handle) if int(row["step"]) <= self.step]
        self.run.logger.info("resumed at step %d", self.step)
        return True

    def data_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for sample in self.manifest.samples:
            digest.update(f"{sample.sample_id}\t{sample.image_path}\t{file_fingerprint(sample.image_path)}\t"
                          f"{sample.prompt}\n".encode())
        return digest.hexdigest()[:24]

    def finish(self) -> Path:
        """Write the tuned embeddings (with metadata), the loss CSV and the loss curve."""
        out = self.run.file(OUTPUT)
        if self.dist.main:
            self.codebook.save(out, {
                "text_encoder": self.ldm.fingerprint,
                "vocabulary": self.ldm.tokenizer.convert_ids_to_tokens(self.codebook.token_ids.tolist()),
                "lut": self.lut.metadata.get("source", "?"),
                "hyperparameters": self.config.to_dict(), "data": self.data_fingerprint(),
                "window": self.config.settings.window(
                    int(self.ldm.architecture.scheduler["num_train_timesteps"])),
                "samples": len(self.manifest.samples), "steps": self.step})
            atomic_write_csv(self.run.file("losses.csv"), LOSS_FIELDS, self.losses)
            loss_curve(self.losses, self.run.file("loss_curve.png"))
        self.dist.barrier()
        return out


def _grad(value: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """d value / d rows, zeros where value does not depend on them (e.g. L_div of a one-token prompt)."""
    if not value.requires_grad:
        return torch.zeros_like(rows)
    (grad,) = torch.autograd.grad(value, rows, retain_graph=True, allow_unused=True)
    return torch.zeros_like(rows) if grad is None else grad


@contextlib.contextmanager
def checkpointed_down_blocks(unet: Any, captured: tuple[str, ...]):
    """Gradient checkpointing of the U-Net's encoder blocks: their activations are recomputed during the
    backward pass instead of kept. Only blocks without captured layers may be recomputed (a recomputed
    captured layer would record its attention twice), so captured down-block layers are refused."""
    if any(name.startswith("down_blocks") for name in captured):
        raise UsageError("gradient checkpointing cannot be used when a down-block layer is captured")
    from torch.utils.checkpoint import checkpoint

    blocks = list(unet.down_blocks)
    for block in blocks:
        def wrapped(hidden_states, temb, context=None, _forward=block.forward):
            return checkpoint(_forward, hidden_states, temb, context, use_reentrant=False)
        block.forward = wrapped
    try:
        yield
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


def loss_curve(losses: list[dict[str, Any]], path: Path) -> None:
    """Training losses (a moving mean when there are many steps) and, when the run has a probe, the probe's
    unjittered L_loc / L_div and the gradient ratio of the two terms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trained = [r for r in losses if r.get("loss") not in ("", None)]
    probed = [r for r in losses if r.get("probe_l_loc") not in ("", None)]
    if not trained and not probed:
        return
    fig, axes = plt.subplots(2 if probed else 1, 1, figsize=(7, 6.5 if probed else 4), squeeze=False)
    ax = axes[0, 0]
    steps = [int(r["step"]) for r in trained]
    window = max(1, len(trained) // 50)
    for key, label in (("loss", "L"), ("l_div", "L_div"), ("l_loc", "L_loc")):
        values = np.array([float(r[key]) for r in trained])
        if not len(values):
            continue
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, label=label + (f" (moving mean of {window} steps)" if window > 1
                                                           else ""))
    ax.set_title("training samples (jittered target)")
    ax.set_ylabel("loss")
    if probed:
        bottom = axes[1, 0]
        at = [int(r["step"]) for r in probed]
        bottom.plot(at, [float(r["probe_l_loc"]) for r in probed], "o-", label="probe L_loc")
        bottom.plot(at, [float(r["probe_l_div"]) for r in probed], "s-", label="probe L_div")
        bottom.set_ylabel("loss")
        bottom.set_title(f"probe ({len(probed)} records, no jitter)")
        ratio = bottom.twinx()
        ratio.plot(at, [float(r["grad_ratio"]) for r in probed], "^--", color="grey",
                   label="|w dL_div| / |dL_loc|")
        ratio.set_ylabel("gradient ratio")
        lines = bottom.get_legend_handles_labels()
        more = ratio.get_legend_handles_labels()
        bottom.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8)
    for row in axes[:, 0]:
        row.xaxis.set_major_locator(MaxNLocator(integer=True))
        row.set_xlabel("step")
    if trained:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
