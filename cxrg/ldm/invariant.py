"""Batch-invariant forward passes: an image's numbers do not depend on which other images share its batch.

Measured on CPU (oneDNN; benchmarks/RESULTS.md, "Many images at once"): of the U-Net's and
autoencoder's operations, the convolutions and the 2-D linear layers (the timestep embedding, one row per
image) pick kernels by batch size, and group norm picks its memory format by it (a channels-last tensor of
one image also passes as contiguous); together they move a heatmap by about 1e-6 between batch 1 and batch
N and a bench summary in its 7th digit. The other operations (layer norm, the token-wise linear layers,
attention, SDPA) already compute each image alone. Inside `batch_invariant(module)` those three kinds run one
sample at a time on a contiguous copy, each with the batch-1 kernel, so a batched run gives the per-image
run's numbers bit for bit while the rest of the network still runs batched. `attention_path` and `capture`
work unchanged inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

PER_SAMPLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm)


def _split(forward: Callable[[torch.Tensor], torch.Tensor], min_dims: int, max_dims: int | None = None):
    """`forward` applied to each sample of a batch alone (a contiguous copy), results concatenated."""

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.dim() < min_dims or (max_dims is not None and x.dim() > max_dims):
            return forward(x)
        if x.shape[0] == 1:
            return forward(x.contiguous())
        # contiguous: a permuted batch-N tensor and its batch-1 counterpart can carry different strides
        # (a size-1 dimension's stride is free), which makes oneDNN pick another memory format and kernel
        return torch.cat([forward(x[i:i + 1].contiguous()) for i in range(x.shape[0])])

    return run


@contextmanager
def batch_invariant(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Within the block, `module`'s convolutions, group norms and linear layers on (N, features) rows (a
    linear layer on (N, tokens, features) keeps its kernel: the token count fixes it) run sample by sample.
    A forward another context set on one of them is kept and restored."""
    if not enabled:
        yield
        return
    saved = []
    for layer in module.modules():
        if isinstance(layer, PER_SAMPLE):
            dims: tuple[int, int | None] = (3, None)
        elif isinstance(layer, nn.Linear):
            dims = (2, 2)
        else:
            continue
        saved.append((layer, layer.__dict__.get("forward")))
        layer.forward = _split(layer.forward, *dims)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer, forward in saved:
            if forward is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = forward  # type: ignore[method-assign]
