"""Capture cross-attention probabilities softmax(QK^T / sqrt(d)) from chosen layers of the U-Net.

`capture(unet, layers)` swaps the chosen CrossAttentionBlocks' forward for an explicit-softmax one that
records the probabilities (detached, or with gradients when asked), and on exit puts back exactly what was
there (a per-module forward set by someone else included), exceptions included. The explicit path computes
what MONAI's non-flash path computes (tests hold the U-Net's output equal with and without capture); a block
using a feature it does not implement (causal masking, relative position embeddings) is refused. Layers
not captured keep whatever attention path they had (the fused one by default).
`stop_after_last` ends the U-Net's forward right after the last captured layer: the rest of the network
cannot change what was captured, so it is not computed.

`attention_path(module, "sdpa")` puts every attention block of a network (self-attention, and the
cross-attention nothing captures) on torch's fused `scaled_dot_product_attention` (MONAI's
`use_flash_attention` path) for the duration of a block: it never materialises the (positions x keys)
probability matrix, which saves memory and time. Captured layers are unaffected: `capture` swaps their
forward for the explicit one whatever the flag says. Blocks the fused path cannot run exactly as the
explicit one (causal masks, relative position embeddings, dropout, `save_attn`) are left alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from cxrg.errors import UsageError


class StopForward(Exception):
    """Raised after the last captured layer to end the forward pass early."""


@dataclass
class Captured:
    """Per layer name, the list of probability tensors (B, heads, positions, tokens), one per call."""

    maps: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def stacked(self, layer: str) -> torch.Tensor:
        return torch.cat(self.maps[layer], dim=0)


def cross_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Names of every cross-attention block, in execution order."""
    from monai.networks.blocks import CrossAttentionBlock

    return [name for name, module in unet.named_modules()
            if isinstance(module, CrossAttentionBlock) and name.endswith("attn2")]


UNSUPPORTED = ("causal", "rel_positional_embedding")


def _check_supported(name: str, block) -> None:
    used = [flag for flag in UNSUPPORTED if getattr(block, flag, None)]
    if used:
        raise UsageError(f"cannot capture layer {name!r}: it uses {', '.join(used)}, which the capture path "
                         "does not implement", hint="choose another layer (cxrg ldm diagnose lists them)")


def _explicit_forward(block, store: list[torch.Tensor], keep_grad: bool):
    def forward(x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = block.input_rearrange(block.to_q(x))
        kv = context if context is not None else x
        k = block.input_rearrange(block.to_k(kv))
        v = block.input_rearrange(block.to_v(kv))
        if block.attention_dtype is not None:
            q, k = q.to(block.attention_dtype), k.to(block.attention_dtype)
        probs = (torch.einsum("blxd,blyd->blxy", q, k) * block.scale).softmax(dim=-1)
        store.append(probs if keep_grad else probs.detach())
        if getattr(block, "save_attn", False):
            block.att_mat = probs.detach()
        out = torch.einsum("bhxy,bhyd->bhxd", block.drop_weights(probs).to(v.dtype), v)
        return block.drop_output(block.out_proj(block.out_rearrange(out)))
    return forward


@contextlib.contextmanager
def capture(unet: torch.nn.Module, layers: Sequence[str], keep_grad: bool = False,
            stop_after_last: bool = False) -> Iterator[Captured]:
    """Record the attention probabilities of `layers` during every forward pass inside the block."""
    modules = dict(unet.named_modules())
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise UsageError(f"no cross-attention layer named {unknown[0]!r} in the U-Net",
                         hint=f"layers: {', '.join(cross_attention_layers(unet))}")
    captured = Captured({name: [] for name in layers})
    order = cross_attention_layers(unet)
    last = max(layers, key=order.index)
    for name in layers:
        _check_supported(name, modules[name])
    handles = []
    saved = {name: modules[name].__dict__.get("forward") for name in layers}
    try:
        for name in layers:
            modules[name].forward = _explicit_forward(modules[name], captured.maps[name], keep_grad)
        if stop_after_last:
            def stop(module, inputs, output):
                raise StopForward
            handles.append(modules[last].register_forward_hook(stop))
        yield captured
    finally:
        for name in layers:
            if saved[name] is None:
                modules[name].__dict__.pop("forward", None)
            else:
                modules[name].forward = saved[name]
        for handle in handles:
            handle.remove()


ATTENTION_PATHS = ("sdpa", "explicit")
"""How attention that nothing captures is computed: torch's fused SDPA or MONAI's explicit softmax."""


def _fusable(block) -> bool:
    return (not getattr(block, "causal", False) and getattr(block, "rel_positional_embedding", None) is None
            and not getattr(block, "save_attn", False) and float(getattr(block, "dropout_rate", 0.0)) == 0.0)


@contextlib.contextmanager
def attention_path(module: torch.nn.Module, path: str) -> Iterator[None]:
    """Every attention block of `module` on `path` ("sdpa" or "explicit") inside the block; restored on
    exit."""
    if path not in ATTENTION_PATHS:
        raise UsageError(f"unknown attention path {path!r}", hint=f"choose {' or '.join(ATTENTION_PATHS)}")
    blocks: list[Any] = [m for m in module.modules() if hasattr(m, "use_flash_attention")]
    saved = [m.use_flash_attention for m in blocks]
    try:
        for block in blocks:
            block.use_flash_attention = path == "sdpa" and _fusable(block)
        yield
    finally:
        for block, flag in zip(blocks, saved, strict=True):
            block.use_flash_attention = flag


def run_until_captured(unet: torch.nn.Module, *args, **kwargs) -> None:
    """Call the U-Net inside `capture(..., stop_after_last=True)`; the early stop is expected."""
    try:
        unet(*args, **kwargs)
    except StopForward:
        return
