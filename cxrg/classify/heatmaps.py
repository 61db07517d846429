"""The heatmap strategies of Appendix K, for one image and its location prompts.

- none: no heatmap (uniform weights): the plain diffusion classifier;
- fixed: the frozen LDM's heatmap of one fixed prompt (default: the pathology class prompt, "pneumothorax"),
  the same prompt for every image;
- location: the frozen LDM's heatmap of the run's "{location} {pathology}" prompt;
- tuned: the same prompt with the tuned anatomy embeddings (the paper's method).

Frozen maps are Otsu-thresholded and tuned ones are not, as for the `ldm-frozen` and `ldm` models. The image
is inverted once (LdmEngine's trajectory cache) and all prompts of a strategy are batched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cxrg.errors import UsageError
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.heatmap import LdmEngine, postprocess
from cxrg.ldm.text import Codebook, check_in_vocabulary, encode, tokenize

STRATEGIES = ("none", "fixed", "location", "tuned")
HEATMAP_SETTINGS = HeatmapSettings()
"""The heatmap pipeline `cxrg classify` uses: the paper's (see docs/ldm.md); Otsu is set per strategy."""


def parse_strategies(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    if unknown or not names:
        raise UsageError(f"unknown strategy {unknown[0]!r}" if unknown else "--strategies is empty",
                         hint=f"choose from {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise UsageError(f"--strategies names a strategy twice: {text}")
    return [s for s in STRATEGIES if s in names]  # canonical order


class HeatmapSource:
    """Model-space (size x size) heatmaps per strategy for one image's location prompts."""

    def __init__(self, engine: LdmEngine, fixed_prompt: str, codebook: Codebook | None = None) -> None:
        self.engine = engine
        self.fixed_prompt = fixed_prompt
        self.codebook = codebook
        self.frozen_settings = engine.settings.with_changes(otsu=True)
        self.tuned_settings = engine.settings.with_changes(otsu=False)

    def maps(self, pixels: torch.Tensor, prompts: Sequence[str], strategies: Sequence[str],
             vocabulary: bool = True) -> dict[str, list[np.ndarray | None]]:
        """strategy -> one map per prompt in `prompts` (None for `none`). `vocabulary=False` lets a
        non-vocabulary prompt (the healthy class prompt) through the tuned strategy: its words keep the
        encoder's own embeddings."""
        out: dict[str, list[np.ndarray | None]] = {}
        if "none" in strategies:
            out["none"] = [None] * len(prompts)
        if "fixed" in strategies:
            fixed = self._maps(pixels, [self.fixed_prompt], None)[0]
            out["fixed"] = [fixed] * len(prompts)
        if "location" in strategies:
            out["location"] = list(self._maps(pixels, prompts, None))
        if "tuned" in strategies:
            if self.codebook is None:
                raise UsageError("the tuned strategy needs tuned embeddings", hint="pass --embeddings FILE")
            for prompt in prompts if vocabulary else ():
                check_in_vocabulary(prompt)
            out["tuned"] = list(self._maps(pixels, prompts, self.codebook))
        return out

    def _maps(self, pixels: torch.Tensor, prompts: Sequence[str], codebook: Codebook | None
              ) -> list[np.ndarray]:
        unique = list(dict.fromkeys(prompts))
        engine = self.engine
        with torch.inference_mode():
            trajectory = engine.trajectory(pixels)
            ids, spans = tokenize(engine.ldm.tokenizer, unique)
            context = encode(engine.ldm.text_encoder, ids, codebook).to(engine.ldm.dtype)
            attention = engine.captured_maps(trajectory, context, spans)
        settings = self.tuned_settings if codebook is not None else self.frozen_settings
        by_prompt = {p: postprocess(attention[i], engine.size, settings) for i, p in enumerate(unique)}
        return [by_prompt[p] for p in prompts]
