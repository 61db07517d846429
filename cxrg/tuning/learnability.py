"""Can tuning move attention to the named anatomy? A controlled experiment on phantoms and a tiny LDM.

Phantoms (phantoms.py) carry a bright blob at the atlas Gaussian of the location their prompt names. A
tiny random LDM of the real classes (input 128, so the captured attention is 8 x 8) is tuned on training
phantoms; on held-out phantoms we compare, before and after tuning, L_loc (eq. 4, no jitter) and the mIoU
of the heatmaps against the location's box (mu +- 2 sigma): `ldm` (tuned rows) against `ldm-frozen`.
Shorter schedules than the paper's (20 DDIM steps, captured 6..11) keep it to a minute on a CPU; the
random model knows nothing about chest X-rays, so this tests the mechanism, not the paper's numbers. Its
cross-attention query/key projections are scaled by `sharpen` (see sharpen_cross_attention) and the
learning rate is 0.1 instead of 1e-4: a random model's attention is otherwise too flat to shape, and its
tiny random text embeddings move little at the paper's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrg.anatomy.lut import Lut
from cxrg.bench.metrics import normalise, score
from cxrg.images import read_image
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine
from cxrg.ldm.loading import load_ldm
from cxrg.ldm.tiny import TINY, tiny_text_config, write_random
from cxrg.runs import RunDir
from cxrg.tuning.data import TuningSample, read_manifest
from cxrg.tuning.phantoms import write_phantom_set
from cxrg.tuning.trainer import Trainer, TuneConfig

SETTINGS = HeatmapSettings(inference_steps=20, capture_steps=tuple(range(6, 12)),
                           capture_order="inversion", otsu=False)


@dataclass
class Result:
    steps: int
    loc_before: float
    loc_after: float
    miou_frozen: float
    miou_tuned: float
    miou_tuned_untrained: float
    seconds: float

    @property
    def loc_drop(self) -> float:
        return (self.loc_before - self.loc_after) / self.loc_before

    def lines(self) -> list[str]:
        return [f"held-out L_loc: {self.loc_before:.4f} before, {self.loc_after:.4f} after {self.steps} "
                f"steps ({self.loc_drop:.1%} lower)",
                f"held-out mIoU vs location boxes: ldm-frozen {self.miou_frozen:.3f}, ldm before tuning "
                f"{self.miou_tuned_untrained:.3f}, ldm after tuning {self.miou_tuned:.3f}",
                f"tuning time: {self.seconds:.0f} s"]


def held_out_loss(trainer: Trainer, samples: list[TuningSample]) -> float:
    """Mean L_loc over samples, without jitter or gradient (the maps the losses read, "and" left out)."""
    from cxrg.tuning.losses import tuning_losses

    values = []
    with torch.no_grad():
        for sample in samples:
            maps = trainer.token_maps(sample)
            g = trainer.gaussian(sample, int(round(math.sqrt(maps.shape[2]))), None)
            values.append(float(tuning_losses(maps, g, trainer.config.alpha, trainer.config.epsilon).loc))
    return float(np.mean(values))


def held_out_miou(engine: LdmEngine, lut: Lut, samples: list[TuningSample]) -> float:
    values = []
    for sample in samples:
        heat = engine.maps(read_image(sample.image_path), [sample.prompt])[0]
        g = lut[sample.locations[0]][0]
        scale = heat.shape[0] / lut.size
        box = np.array([[g.mu_x - 2 * g.sigma_x, g.mu_y - 2 * g.sigma_y,
                         g.mu_x + 2 * g.sigma_x, g.mu_y + 2 * g.sigma_y]]) * scale
        values.append(score(normalise(heat), box)[1])
    return float(np.mean(values))


def sharpen_cross_attention(unet: torch.nn.Module, factor: float) -> None:
    """Scale the query and key projections of every cross-attention by `factor` (logits by factor^2).

    A randomly initialised network has tiny attention logits (layer-normed text features times small random
    projections), so every token's map is nearly flat whatever its embedding, and there is nothing for tuning
    to shape. A trained LDM's logits span several units; sharpening gives the random model that range.
    """
    from cxrg.ldm.attention import cross_attention_layers

    modules = dict(unet.named_modules())
    with torch.no_grad():
        for name in cross_attention_layers(unet):
            modules[name].to_q.weight.mul_(factor)
            modules[name].to_k.weight.mul_(factor)


def run_experiment(workdir: Path, steps: int = 600, train: int = 32, held_out: int = 16, lr: float = 0.1,
                   seed: int = 0, size: int = 128, sharpen: float = 10.0, log: Any = print) -> Result:
    import time

    torch.set_num_threads(1)  # tiny networks: a second thread costs more than it saves
    lut = Lut.default()
    architecture = replace(TINY, image_size=size)
    weights = write_random(Path(workdir) / "weights", architecture, tiny_text_config(), seed,
                           note="learnability tiny LDM")
    train_manifest = write_phantom_set(Path(workdir) / "train", train, lut, size, seed=seed + 1)
    test_manifest = write_phantom_set(Path(workdir) / "test", held_out, lut, size, seed=seed + 2)
    ldm = load_ldm(weights)
    if sharpen != 1.0:
        sharpen_cross_attention(ldm.unet, sharpen)
    config = TuneConfig(steps=steps, lr=lr, seed=seed, checkpoint_every=max(steps, 1), chunk=6,
                        settings=SETTINGS)
    run = RunDir(Path(workdir) / "run", "learnability", {"steps": steps, "lr": lr, "seed": seed})
    trainer = Trainer(ldm, lut, read_manifest(train_manifest, train_manifest.parent / "images"), config, run,
                      Path(workdir) / "cache")
    test = read_manifest(test_manifest, test_manifest.parent / "images").samples
    frozen = LdmEngine(ldm, replace(SETTINGS, otsu=True))
    untrained = LdmEngine(ldm, SETTINGS, trainer.codebook)
    loc_before = held_out_loss(trainer, test)
    miou_frozen = held_out_miou(frozen, lut, test)
    miou_untrained = held_out_miou(untrained, lut, test)
    log(f"before: held-out L_loc {loc_before:.4f}, mIoU ldm-frozen {miou_frozen:.3f}, "
        f"ldm {miou_untrained:.3f}")
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tuned = LdmEngine(ldm, SETTINGS, trainer.codebook)
    run.close()
    loc_after = held_out_loss(trainer, test)
    return Result(steps, loc_before, loc_after, miou_frozen, held_out_miou(tuned, lut, test), miou_untrained,
                  seconds)
