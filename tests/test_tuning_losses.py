"""eq. 2-4 against values worked out by hand, and the target's gradient rule."""

from __future__ import annotations

import math

import pytest
import torch

from cxrg.tuning.losses import diversity_loss, localisation_loss, spatial_mean, target, tuning_losses


def test_diversity_hand_example():
    # one (t, l), D = 2, three tokens: a = (1, 0), b = (0, 1), c = (1, 1)
    maps = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]])  # (T=1, L=1, D=2, S=3)
    # cos(a,b) = 0, cos(a,c) = cos(b,c) = 1/sqrt(2): squared 0, 1/2, 1/2; 6 ordered pairs -> (0+.5+.5)*2/6
    assert diversity_loss(maps).item() == pytest.approx(1 / 3)


def test_diversity_of_a_single_token_is_zero_and_identical_tokens_give_one():
    assert diversity_loss(torch.rand(2, 3, 5, 1)).item() == 0.0
    same = torch.rand(2, 3, 5, 1).expand(2, 3, 5, 4)
    assert diversity_loss(same).item() == pytest.approx(1.0)


def test_target_and_localisation_hand_example():
    a_sp = torch.tensor([0.5, 0.3, 0.2])
    g = torch.tensor([1.0, 1e-6, 0.0])
    trg = target(a_sp, g, alpha=0.1, epsilon=1e-5)
    # inside the support (G > 1e-5) only the first position: 0.5 + 0.1*1; the others alpha*G
    assert trg.tolist() == pytest.approx([0.6, 1e-7, 0.0])
    cos = (0.5 * 0.6 + 0.3 * 1e-7) / (math.sqrt(0.38) * math.sqrt(0.36 + 1e-14))
    assert localisation_loss(a_sp[None, None], trg).item() == pytest.approx(1 - cos, rel=1e-6)


def test_target_stops_the_gradient_of_a_sp():
    a_sp = torch.tensor([0.5, 0.3, 0.2], requires_grad=True)
    trg = target(a_sp, torch.tensor([1.0, 0.5, 0.0]))
    assert not trg.requires_grad


def test_total_is_div_plus_loc_averaged_over_steps_and_layers():
    torch.manual_seed(0)
    maps = torch.rand(3, 2, 16, 4).softmax(dim=-2)
    g = torch.rand(16)
    losses = tuning_losses(maps, g)
    assert losses.total.item() == pytest.approx(losses.div.item() + losses.loc.item())
    # the (t, l) mean equals the mean of per-(t, l) losses
    per = [tuning_losses(maps[t:t + 1, k:k + 1], g).loc.item() for t in range(3) for k in range(2)]
    assert losses.loc.item() == pytest.approx(sum(per) / 6)
    assert spatial_mean(maps).shape == (3, 2, 16)


def test_perfect_alignment_gives_zero_localisation_loss():
    g = torch.tensor([0.0, 1.0, 2.0, 0.0])
    a_sp = (g / g.sum())[None, None]
    assert localisation_loss(a_sp, target(a_sp, g)).item() == pytest.approx(0.0, abs=1e-7)
