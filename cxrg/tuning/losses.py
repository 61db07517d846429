"""The tuning losses, eq. 2-4 of the paper, on captured cross-attention with gradients.

Shapes: `maps` is (T, L, D, S): T captured timesteps, L layers, D spatial positions (16 x 16 = 256), S the
prompt's non-special tokens (begin, end and padding excluded), values softmax(QK^T / sqrt(d)).

- eq. 2, L_div: each token's map l2-normalised over D; the mean over (t, l) and over the S (S - 1) ordered
  pairs i != j of the squared cosine cos(a_i, a_j)^2. Zero when S = 1 (no pair).
- A_sp = the mean over the S tokens, a D-vector per (t, l).
- eq. 3, target: trg = 1[G > epsilon] * stopgrad(A_sp) + alpha * G, G the prompt's Gaussian at the maps'
  resolution (D positions), jittered per step.
- eq. 4, L_loc: the mean over (t, l) of 1 - cos(A_sp, trg).
- L = w * L_div + L_loc, w = 1 (the paper); `cxrg tune --div-weight W` changes it (Appendix H.2: 0 turns
  L_div off).

G's scale is a named setting (`TARGET_NORMS`): the paper does not say whether G has peak 1 or is a density.
It matters because alpha * G is added to attention probabilities: with peak 1, alpha G (0.1 at the peak)
outweighs A_sp (a few 1e-2 per position) and the target is mostly the Gaussian; as a density (sum 1 over
the D positions, peak about 0.02-0.06 at 16 x 16) alpha G is the small "regulariser in the case where the
anatomical location ... does not receive any cross-attention activations" of Section 3.3. The mask
1[G > epsilon] also depends on it: 4.8 sigma with peak 1, about 4 sigma as a density.

Special tokens (begin, end, padding and the binding token "and") are not among the S tokens: the
paper's eq. 2-4 exclude them, and the trainer selects the positions with `ldm.text.content_positions`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

EPS = 1e-12


@dataclass(frozen=True)
class Losses:
    total: torch.Tensor
    div: torch.Tensor
    loc: torch.Tensor


DIV_PAIRS = ("all", "across-phrases")


def diversity_loss(maps: torch.Tensor, groups: Sequence[int] | None = None) -> torch.Tensor:
    """eq. 2: mean squared cosine between different tokens' l2-normalised maps.

    `groups` (one id per token) is a departure from the paper, clearly labelled (`--div-pairs
    across-phrases`): pairs of tokens of the same phrase (the sub-tokens of one location, e.g. "left" and
    "lower", or of the pathology) are left out, so L_div no longer pushes apart the words that name one
    place. None: every pair i != j, as eq. 2."""
    s = maps.shape[-1]
    if s < 2:
        return maps.sum() * 0.0
    unit = maps / maps.norm(dim=-2, keepdim=True).clamp_min(EPS)  # normalise over D
    gram = torch.einsum("tldi,tldj->tlij", unit, unit)  # cosines, (T, L, S, S)
    pairs = ~torch.eye(s, dtype=torch.bool, device=maps.device)
    if groups is not None:
        ids = torch.as_tensor(list(groups), device=maps.device)
        pairs &= ids[:, None] != ids[None, :]
        if not bool(pairs.any()):
            return maps.sum() * 0.0
    return gram[..., pairs].square().mean()


def spatial_mean(maps: torch.Tensor) -> torch.Tensor:
    """A_sp: the mean over the prompt's tokens, (T, L, D)."""
    return maps.mean(dim=-1)


TARGET_NORMS = ("peak", "density")


def scale_gaussian(gaussian: torch.Tensor, norm: str = "peak") -> torch.Tensor:
    """G as the LUT renders it, peak 1 at the Gaussian's centre ("peak"), or summing to 1 over the
    positions ("density")."""
    if norm == "peak":
        return gaussian
    if norm == "density":
        return gaussian / gaussian.sum().clamp_min(EPS)
    raise ValueError(f"target_norm must be one of {', '.join(TARGET_NORMS)}, not {norm!r}")


def target(a_sp: torch.Tensor, gaussian: torch.Tensor, alpha: float = 0.1, epsilon: float = 1e-5
           ) -> torch.Tensor:
    """eq. 3: keep the model's own attention inside the Gaussian's support, nudged towards the Gaussian."""
    support = (gaussian > epsilon).to(a_sp.dtype)
    return support * a_sp.detach() + alpha * gaussian.to(a_sp.dtype)


def localisation_loss(a_sp: torch.Tensor, trg: torch.Tensor) -> torch.Tensor:
    """eq. 4: mean over (t, l) of 1 - cos(A_sp, trg)."""
    cos = torch.nn.functional.cosine_similarity(a_sp, trg.expand_as(a_sp), dim=-1, eps=EPS)
    return (1 - cos).mean()


def tuning_losses(maps: torch.Tensor, gaussian: torch.Tensor, alpha: float = 0.1, epsilon: float = 1e-5,
                  div_weight: float = 1.0, groups: Sequence[int] | None = None) -> Losses:
    """L = w L_div + L_loc for one sample; `gaussian` is (D,) or broadcastable to (T, L, D); `groups`: see
    diversity_loss."""
    a_sp = spatial_mean(maps)
    div = diversity_loss(maps, groups)
    loc = localisation_loss(a_sp, target(a_sp, gaussian, alpha, epsilon))
    return Losses(div_weight * div + loc, div, loc)


def layer_token_maps(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """Per captured layer (B, D_l, S) head-averaged maps -> (B, L, D, S), layers of a lower resolution
    brought to the largest one (bilinear), as the heatmaps do."""
    from cxrg.ldm.heatmap import common_side

    sides = [int(round(math.sqrt(m.shape[1]))) for m in per_layer]
    if len(set(sides)) == 1:
        return torch.stack(per_layer, dim=1)
    grids = [m.transpose(1, 2).reshape(m.shape[0], m.shape[2], s, s) for m, s in zip(per_layer, sides,
                                                                                      strict=True)]
    grids = common_side(grids)
    return torch.stack([g.reshape(g.shape[0], g.shape[1], -1).transpose(1, 2) for g in grids], dim=1)
