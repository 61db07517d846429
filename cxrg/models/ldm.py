"""The paper's models: the chest X-ray LDM, frozen (`ldm-frozen`) or with tuned anatomy embeddings (`ldm`).

Settings come from the command line through the environment, so that every model keeps the plain
`load(weights_dir, device)` protocol: CXRG_DTYPE (float32, bfloat16, float16), CXRG_EMBEDDINGS (the tuned
file; default <weights>/tuned_embeddings.safetensors), CXRG_LDM_BATCH (conditional passes per U-Net call),
CXRG_LDM_SETTINGS (JSON of heatmap settings from cxrg.toml's [ldm] table; the tuned model never thresholds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxrg import __version__
from cxrg.ldm.weights import BUNDLE, HOW_TO_GET_BUNDLE, HOW_TO_GET_TEXT, TEXT_REPO, TUNED_EMBEDDINGS
from cxrg.registry import ModelCard, Query, WeightFile

LDM_WEIGHTS = (
    WeightFile(f"{BUNDLE}/models/autoencoder.pth", "MONAI CXR LDM autoencoder (Apache-2.0)",
               HOW_TO_GET_BUNDLE),
    WeightFile(f"{BUNDLE}/models/diffusion_model.pth", "MONAI CXR LDM diffusion U-Net (Apache-2.0)",
               HOW_TO_GET_BUNDLE),
    WeightFile(f"{TEXT_REPO}/text_encoder/", "Stable Diffusion 2.1-base CLIP text encoder (CreativeML "
               "Open RAIL++-M)", HOW_TO_GET_TEXT),
)


class LdmFrozenModel:
    """Cross-attention heatmaps of the LDM with the text encoder's own embeddings; any free-text prompt."""

    card = ModelCard(
        name="ldm-frozen",
        version=__version__,
        licence="Apache-2.0 (code); weights under their own licences",
        description="Chest X-ray latent diffusion model (MONAI bundle, SD 2.1 text encoder), frozen: DDIM "
                    "inversion and cross-attention heatmaps (Vilouras et al. 2024), Otsu-thresholded.",
        weights=LDM_WEIGHTS,
        notes="Free-text prompts work. `cxrg weights status` shows what is missing.",
    )
    otsu = True

    def __init__(self) -> None:
        self.engine: Any = None

    def load(self, weights_dir: Path | None = None, device: str = "cpu") -> None:
        from cxrg.ldm.config import HeatmapSettings
        from cxrg.ldm.heatmap import LdmEngine
        from cxrg.ldm.loading import load_ldm

        ldm = load_ldm(weights_dir, device=device, dtype=os.environ.get("CXRG_DTYPE", "float32"))
        import json

        overrides = json.loads(os.environ.get("CXRG_LDM_SETTINGS") or "{}")
        if not self.otsu:
            overrides.pop("otsu", None)  # the tuned model's maps are never thresholded
        settings = HeatmapSettings(otsu=self.otsu).with_overrides(overrides)
        batch = int(os.environ.get("CXRG_LDM_BATCH", "10"))
        self.engine = LdmEngine(ldm, settings, self._codebook(ldm, weights_dir), batch_size=batch)

    def _codebook(self, ldm, weights_dir: Path | None):
        return None

    def _check_prompt(self, prompt: str) -> None:
        """Any prompt is fine for the frozen model."""

    def heatmap(self, query: Query) -> np.ndarray:
        return self.heatmaps([query])[0]

    def heatmaps(self, queries: Sequence[Query]) -> list[np.ndarray]:
        """Several prompts on one image: inverted once, conditional passes batched."""
        if self.engine is None:
            self.load()
        assert self.engine is not None
        images = {id(q.image) for q in queries}
        if len(images) != 1:
            return [out for q in queries for out in self.heatmaps([q])]
        for query in queries:
            self._check_prompt(query.prompt)
        return self.engine.heatmaps(queries[0].image, [q.prompt for q in queries])


class LdmTunedModel(LdmFrozenModel):
    """The LDM with the anatomy token embeddings tuned by `cxrg tune` (the paper's method)."""

    card = ModelCard(
        name="ldm",
        version=__version__,
        licence="Apache-2.0 (code); weights under their own licences",
        description="Chest X-ray LDM with prompt-tuned anatomy embeddings (Vilouras et al., MIDL 2026): "
                    "cross-attention heatmaps of '{location} {pathology}' prompts.",
        weights=(*LDM_WEIGHTS, WeightFile(TUNED_EMBEDDINGS, "tuned embeddings from `cxrg tune` "
                                          "(or --embeddings FILE / $CXRG_EMBEDDINGS)", "cxrg tune")),
        notes="Only vocabulary prompts ('<location> [and <location>] <pathology>'); use ldm-frozen for free "
              "text.",
    )
    otsu = False

    def _codebook(self, ldm, weights_dir: Path | None):
        from cxrg.ldm.text import Codebook
        from cxrg.ldm.weights import WeightPaths, weights_root

        path = os.environ.get("CXRG_EMBEDDINGS") or WeightPaths(weights_root(weights_dir)).tuned_embeddings
        codebook, _ = Codebook.load(Path(path), fingerprint=ldm.fingerprint)
        return codebook

    def _check_prompt(self, prompt: str) -> None:
        from cxrg.ldm.text import check_in_vocabulary

        check_in_vocabulary(prompt)
