"""DDIM inversion along the unconditional trajectory, written out so every number is visible.

Timesteps in inversion order (image -> noise) for N steps of T training steps, ratio r = T // N:
'leading' t_i = i * r (0, 10, ..., 990 for N = 100), 'trailing' t_i = T - 1 - (N - 1 - i) * r (9, 19, ...,
999). Step i evaluates the U-Net at t_i on the latent x_i, which sits at level t_i - r (x_0 is the clean
latent, level "-r" with alpha = 1), and moves it to level t_i (Mokady et al. 2023; Vilouras et al. 2024):

    x0_hat = sqrt(a) x - sqrt(1 - a) v,  eps_hat = sqrt(a) v + sqrt(1 - a) x   (v-prediction; a at t_i - r)
    x_next = sqrt(a') x0_hat + sqrt(1 - a') eps_hat                             (a' at t_i)

The paper (Sec. 3.3) captures 30 steps "in range [30, 60]" of 100, counted "following the reverse diffusion
process (mapping from noise to image latents)": indices 30..59 from the noisy end, t = 690..400 on the
'leading' grid (cxrg's default), t = 699..409 on the 'trailing' grid. The Vilouras 2024 code
(vios-s/ldm-phrase-grounding, models_local/get_models.py) always builds the 'trailing' grid
(np.arange(T, 0, -r) - 1), so the paper protocol uses it (cxrg/protocol.py, timestep_spacing). That
code's own evaluation ran 300 steps (eval_ldm.py's default), r = 3, 334 steps t = 0..999, and captured
indices 120..179 in inversion order, t = 360..537. The paper gives no t range of its own.
"""

from __future__ import annotations

import torch

from cxrg.errors import UsageError


def inversion_timesteps(steps: int, train_steps: int = 1000, spacing: str = "leading") -> list[int]:
    if not 0 < steps <= train_steps:
        raise UsageError(f"inference steps must be in 1..{train_steps}, got {steps}")
    ratio = train_steps // steps
    if spacing == "leading":
        return [i * ratio for i in range(steps)]
    if spacing == "trailing":
        return [train_steps - 1 - (steps - 1 - i) * ratio for i in range(steps)]
    raise UsageError(f"unknown timestep spacing {spacing!r}", hint="use leading or trailing")


def alphas_cumprod(scheduler: dict) -> torch.Tensor:
    """Cumulative alpha products of the bundle's noise schedule, from MONAI's DDIM scheduler."""
    from monai.networks.schedulers import DDIMScheduler

    ddim = DDIMScheduler(num_train_timesteps=scheduler["num_train_timesteps"], schedule=scheduler["schedule"],
                         beta_start=scheduler["beta_start"], beta_end=scheduler["beta_end"],
                         prediction_type=scheduler["prediction_type"], clip_sample=scheduler["clip_sample"])
    return ddim.alphas_cumprod.to(torch.float64)


def to_x0_and_eps(sample: torch.Tensor, output: torch.Tensor, alpha: torch.Tensor | float,
                  prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's output as (predicted clean latent, predicted noise), exactly as MONAI's DDIM defines it."""
    a = torch.as_tensor(alpha, dtype=torch.float64)
    sa, sb = float(a.sqrt()), float((1 - a).sqrt())
    if prediction_type == "v_prediction":
        return sa * sample - sb * output, sa * output + sb * sample
    if prediction_type == "epsilon":
        return (sample - sb * output) / sa, output
    if prediction_type == "sample":
        return output, (sample - sa * output) / sb
    raise UsageError(f"unknown prediction type {prediction_type!r}")


def invert_step(sample: torch.Tensor, output: torch.Tensor, level_from: int, level_to: int,
                alphas: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Move `sample` from noise level `level_from` (negative: the clean latent) to `level_to`."""
    alpha_from = alphas[level_from] if level_from >= 0 else torch.tensor(1.0, dtype=torch.float64)
    x0, eps = to_x0_and_eps(sample, output, alpha_from, prediction_type)
    alpha_to = alphas[level_to]
    return float(alpha_to.sqrt()) * x0 + float((1 - alpha_to).sqrt()) * eps
