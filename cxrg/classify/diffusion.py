"""The diffusion classifier's error (Li et al. 2023) with the heatmap weighting of the paper's eq. 8.

For an image with clean latent x0 and class prompt c, the error is

    E_{t,eps}[ sum_p h_c(p) * ||eps - eps_theta(x_t, t, c)||_p / sum_p h_c(p) ]
    with x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps

where p runs over latent positions, ||.||_p is the norm over the latent channels at p as eq. 8 writes it
(DrawSettings.error = "norm"; "squared" uses ||.||^2_p, Li et al.'s squared error), and
h_c is the class's heatmap at latent resolution (all ones for the plain classifier, which makes it the mean
over positions). The model predicts v; eps_theta = sqrt(a_t) v + sqrt(1 - a_t) x_t, exactly as MONAI's DDIM
scheduler (and cxrg.ldm.ddim.to_x0_and_eps) define it.

The expectation is estimated with D draws (t_d, eps_d) that are the same for every class prompt of an image
(seeded by the image), so class differences are not drowned in draw noise (Li et al.'s paired estimate).
Several images' passes can share U-Net calls (`error_maps_batch`: each image keeps its own draws).
The weights do not change the U-Net passes, so `error_maps` returns the per-position error averaged over
the draws once per class, and every weighting (every strategy, every location prompt) is a cheap reduction
of it (`weighted_error`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cxrg.errors import UsageError


@dataclass(frozen=True)
class DrawSettings:
    draws: int = 100
    """(t, eps) draws per image, shared by its class prompts."""
    t_min: int = 0
    t_max: int = 999
    """Inclusive range of training timesteps t is drawn from (0..999 = the whole schedule, as Li et al.)."""
    batch_size: int = 32
    """U-Net passes (draw x prompt pairs) per call."""
    error: str = "squared"
    """Eq. 8's error at a position: "norm" ||eps - eps_theta|| over the channels, as the paper writes it
    (the paper protocol), or "squared" ||.||^2 (Li et al.'s squared error; cxrg)."""

    def check(self, train_steps: int) -> None:
        if self.draws < 1:
            raise UsageError(f"--draws must be at least 1, got {self.draws}")
        if not 0 <= self.t_min <= self.t_max < train_steps:
            raise UsageError(f"timestep range {self.t_min}..{self.t_max} is not inside 0..{train_steps - 1}",
                             hint="use 0 <= --t-min <= --t-max < the number of training steps")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.error not in ERRORS:
            raise UsageError(f"unknown --error {self.error!r}", hint=f"choose {' or '.join(ERRORS)}")


def draw_noise(seed: int, image_key: str, settings: DrawSettings,
               latent_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps (D,) int64, eps (D, *latent_shape) float32), reproducible from (seed, image key).

    t is stratified: the range is cut into D equal strata and one t drawn uniformly in each, which keeps
    E_t unbiased with less variance than D independent draws (Li et al. use evenly spaced t for the same
    reason). The draws depend on the image only, never on the prompt or the strategy.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(image_key.encode("utf-8"))]))
    edges = np.linspace(settings.t_min, settings.t_max + 1, settings.draws + 1)
    u = rng.random(settings.draws)
    t = np.floor(edges[:-1] + u * (edges[1:] - edges[:-1])).astype(np.int64)
    t = np.clip(t, settings.t_min, settings.t_max)
    eps = rng.standard_normal((settings.draws, *latent_shape), dtype=np.float32)
    return t, eps


def _per_sample(alpha: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = alpha.to(torch.float64).reshape(-1, *([1] * (like.ndim - 1)))
    return a.sqrt().to(like.dtype), (1 - a).sqrt().to(like.dtype)


def noisy(x0: torch.Tensor, eps: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, one a_t per batch element (MONAI's add_noise)."""
    sa, sb = _per_sample(alpha, eps)
    return sa * x0 + sb * eps


def to_eps(sample: torch.Tensor, output: torch.Tensor, alpha: torch.Tensor, prediction_type: str
           ) -> torch.Tensor:
    """The predicted noise, one a_t per batch element: cxrg.ldm.ddim.to_x0_and_eps's math, batched."""
    sa, sb = _per_sample(alpha, output)
    if prediction_type == "v_prediction":
        return sa * output + sb * sample
    if prediction_type == "epsilon":
        return output
    if prediction_type == "sample":
        return (sample - sa * output) / sb
    raise UsageError(f"unknown prediction type {prediction_type!r}")


ERRORS = ("norm", "squared")


def error_maps(unet: torch.nn.Module, latent: torch.Tensor, contexts: torch.Tensor, timesteps: np.ndarray,
               eps: np.ndarray, alphas: torch.Tensor, prediction_type: str, batch_size: int,
               error: str = "squared") -> np.ndarray:
    """(classes, h, w) float64: per latent position, ||eps - eps_theta||^2 summed over channels (error=
    "norm": its square root, the norm over channels of eq. 8), averaged over the draws; every (draw, class)
    pass batched `batch_size` at a time (draw-major order).

    `latent` is the clean (1, C, h, w) latent, `contexts` the (classes, 77, D) prompt embeddings.
    """
    return error_maps_batch(unet, latent, contexts, [timesteps], [eps], alphas, prediction_type,
                            batch_size, error)[0]


def error_maps_batch(unet: torch.nn.Module, latents: torch.Tensor, contexts: torch.Tensor,
                     timesteps: Sequence[np.ndarray], eps: Sequence[np.ndarray], alphas: torch.Tensor,
                     prediction_type: str, batch_size: int, error: str = "squared") -> list[np.ndarray]:
    """`error_maps` of several images at once: `latents` (N, C, h, w) with image n's own draws
    (timesteps[n], eps[n]); the (image, draw, class) passes of all images share the U-Net calls,
    `batch_size` per call. Each image's maps equal its own `error_maps` to float rounding."""
    device, dtype = latents.device, latents.dtype
    n_classes = contexts.shape[0]
    t_all = torch.as_tensor(np.concatenate([np.asarray(t) for t in timesteps]), dtype=torch.long)
    owner = torch.repeat_interleave(torch.arange(len(timesteps)), torch.tensor([len(t) for t in timesteps]))
    alpha_all = alphas.cpu()[t_all]
    eps_all = torch.as_tensor(np.concatenate([np.asarray(e) for e in eps]), device=device)
    x_t = noisy(latents.float()[owner.to(device)], eps_all, alpha_all.to(device))
    jobs = [(d, k) for d in range(len(t_all)) for k in range(n_classes)]
    totals = torch.zeros((len(timesteps) * n_classes, *latents.shape[-2:]), dtype=torch.float64,
                         device=device)
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        d_idx = torch.tensor([d for d, _ in chunk])
        k_idx = torch.tensor([k for _, k in chunk])
        sample = x_t[d_idx.to(device)]
        output = unet(sample.to(dtype), timesteps=t_all[d_idx].to(device), context=contexts[k_idx.to(device)])
        predicted = to_eps(sample, output.float(), alpha_all[d_idx].to(device), prediction_type)
        squared = (eps_all[d_idx.to(device)] - predicted).square().sum(dim=1).to(torch.float64)
        totals.index_add_(0, (owner[d_idx] * n_classes + k_idx).to(device),
                          squared.sqrt() if error == "norm" else squared)
    per_image = totals.reshape(len(timesteps), n_classes, *latents.shape[-2:]).cpu().numpy()
    return [per_image[n] / len(timesteps[n]) for n in range(len(timesteps))]


def weighted_error(maps: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Eq. 8 for every class: sum_p h(p) e_c(p) / sum_p h(p); None (or all zero) weights = the plain mean."""
    maps = np.asarray(maps, dtype=np.float64)
    if weights is None or not np.any(weights > 0):
        return maps.mean(axis=(-2, -1))
    w = np.asarray(weights, dtype=np.float64)
    return (maps * w).sum(axis=(-2, -1)) / w.sum()


WEIGHTINGS = ("per-class", "shared")


def class_weighted_error(maps: np.ndarray, weights: Sequence[np.ndarray | None]) -> np.ndarray:
    """Eq. 8 as the paper writes it: class c's error map weighted by class c's own heatmap h_c."""
    return np.array([weighted_error(maps[c], w) for c, w in enumerate(weights)])


def to_latent(heatmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A model-space heatmap (size x size, the crop the latent encodes) -> latent resolution by area
    averaging: each latent position gets the mean of the pixels it covers, so the map's mass is kept."""
    heat = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))[None, None]
    return torch.nn.functional.adaptive_avg_pool2d(heat, shape)[0, 0].numpy().astype(np.float64)
