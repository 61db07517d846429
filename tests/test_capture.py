"""Capturing attention must not change the model: same output, the module restored exactly, refusals."""

from __future__ import annotations

import pytest
import torch

from cxrg.errors import UsageError
from cxrg.ldm.attention import capture, cross_attention_layers


def test_unet_output_is_the_same_with_capture_on_every_cross_attention_layer(ldm):
    unet = ldm.unet
    latent = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    context = torch.randn(2, 77, ldm.text_encoder.config.hidden_size,
                          generator=torch.Generator().manual_seed(1))
    times = torch.tensor([100, 600])
    with torch.no_grad():
        plain = unet(latent, timesteps=times, context=context)
        layers = cross_attention_layers(unet)
        with capture(unet, layers) as got:
            captured = unet(latent, timesteps=times, context=context)
    torch.testing.assert_close(captured, plain, rtol=1e-5, atol=1e-6)
    assert all(len(got.maps[name]) == 1 for name in layers)
    probs = got.maps[layers[0]][0]
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))


def test_a_forward_set_by_someone_else_is_put_back(ldm):
    name = cross_attention_layers(ldm.unet)[0]
    block = dict(ldm.unet.named_modules())[name]
    original = type(block).forward.__get__(block)

    def theirs(x, context=None):
        return original(x, context)

    block.forward = theirs
    try:
        with capture(ldm.unet, [name]):
            assert block.forward is not theirs
        assert block.forward is theirs
    finally:
        del block.forward
    assert "forward" not in block.__dict__


def test_blocks_with_unimplemented_features_are_refused(ldm):
    name = cross_attention_layers(ldm.unet)[0]
    block = dict(ldm.unet.named_modules())[name]
    block.causal = True
    try:
        with pytest.raises(UsageError, match="uses causal"), capture(ldm.unet, [name]):
            pass
    finally:
        block.causal = False
    assert "forward" not in block.__dict__
