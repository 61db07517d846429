"""The straightforward tuning step, for the equivalence test and the benchmark (never used to train).

It re-inverts the image at every step and runs one timestep at a time through the full U-Net: an
unconditional pass to move along the trajectory, and at each captured step a conditional pass with
gradients. The fast path (trainer.py) must give the same gradient.
"""

from __future__ import annotations

import math

import torch

from cxrg.ldm.attention import capture
from cxrg.ldm.text import content_positions, encode, tokenize
from cxrg.tuning.data import TuningSample
from cxrg.tuning.losses import layer_token_maps, tuning_losses


def naive_sample_gradients(trainer, sample: TuningSample, step: int) -> float:
    engine, ldm = trainer.engine, trainer.ldm
    settings = trainer.config.settings
    wanted = list(settings.inversion_steps)
    ids, spans = tokenize(ldm.tokenizer, [sample.prompt])
    positions = content_positions(ldm.tokenizer, ids[0].tolist(), spans[0])
    with torch.no_grad():
        latent = engine.encode_image(trainer.pixels(sample)).float()
        uncond = engine.unconditional()
    per_step = []
    for i in range(max(wanted) + 1):
        if i in wanted:
            context = encode(ldm.text_encoder, ids, trainer.codebook).to(ldm.dtype)
            with capture(ldm.unet, settings.layers, keep_grad=True) as got:
                ldm.unet(latent.to(ldm.dtype), timesteps=engine._t(i, 1), context=context)
            per_step.append(layer_token_maps([got.stacked(name).float().mean(dim=1)[:, :, positions]
                                              for name in settings.layers])[0])  # (L, D, S)
        if i < max(wanted):
            with torch.no_grad():
                output = ldm.unet(latent.to(ldm.dtype), timesteps=engine._t(i, 1), context=uncond)
                latent = engine._step(latent, output.float(), i)
    maps = torch.stack(per_step)  # (T, L, D, S)
    side = int(round(math.sqrt(maps.shape[2])))
    losses = tuning_losses(maps, trainer.gaussian(sample, side, step), trainer.config.alpha,
                           trainer.config.epsilon, trainer.config.div_weight)
    losses.total.backward()
    return float(losses.total.detach())
