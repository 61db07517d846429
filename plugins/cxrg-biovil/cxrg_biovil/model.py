"""The cxrg models `biovil` and `biovil-t`: hi-ml-multimodal similarity maps behind the HeatmapModel protocol.

Importing this module is cheap (cxrg models list imports it): torch and hi-ml are imported in `load`. It
fails at once, with the reason, when hi-ml-multimodal or torchvision is not installed, so that `cxrg models
list` shows the plugin as broken instead of failing later.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.config import weights_root
from cxrg.registry import ModelCard, Query, WeightFile
from cxrg_biovil import __version__
from cxrg_biovil.variants import BIOVIL, BIOVIL_T, RESIZE, Variant
from cxrg_biovil.weights import find_checkpoint, find_text_folder

for _module, _package in (("health_multimodal", "hi-ml-multimodal==0.2.2"), ("torchvision", "torchvision")):
    if importlib.util.find_spec(_module) is None:
        raise ImportError(f"{_package} is not installed; cxrg-biovil needs its own environment "
                          "(see plugins/cxrg-biovil/README.md)")

NOTES = ("Raw similarities are cosines in [-1, 1], clamped at 0 as in the Vilouras et al. 2024 evaluation of "
         "BioViL(-T) (eval_biovil_t.py); the harness then min-max normalises. The image is the one cxrg read "
         "(DICOM window, MONOCHROME1 inverted), remapped to 8 bits as hi-ml does. Nothing is downloaded.")


def _card(variant: Variant, paper: str, text_model: str) -> ModelCard:
    grid = variant.crop_size // 32
    folder = variant.text_repo
    get = (f"hf download {folder} --revision {variant.text_revision} --local-dir $CXRG_HOME/{folder} "
           "(on a machine with internet; nothing is downloaded at run time)")
    return ModelCard(
        name=variant.name,
        version=__version__,
        licence="MIT (hi-ml-multimodal code and the Microsoft BiomedVLP weights)",
        description=f"{paper}: ResNet-50 image encoder (resize {RESIZE}, centre crop {variant.crop_size}, "
                    f"{grid}x{grid} patches) and {text_model}; phrase-patch cosine similarity, Gaussian-"
                    "smoothed (sigma 1.5 patches), upsampled to the image (nearest); NaN outside the crop.",
        weights=(
            WeightFile(folder, f"{text_model} text model and tokenizer (Hugging Face folder, revision "
                       f"{variant.text_revision}: config.json, vocab.txt, pytorch_model.bin)", get),
            WeightFile(f"{folder}/{variant.checkpoint}",
                       "image encoder checkpoint (also accepted directly in the weights folder)",
                       f"part of the same download ({variant.checkpoint})"),
        ),
        notes=NOTES,
    )


class _HiMLModel:
    variant: Variant
    card: ModelCard

    def __init__(self) -> None:
        self._engine: Any = None

    def load(self, weights_dir: Path | None = None, device: str = "cpu") -> None:
        from cxrg_biovil.loading import build_engine

        root = weights_root(weights_dir)
        checkpoint = find_checkpoint(self.variant, root)
        text_folder = find_text_folder(self.variant, root)
        self._engine = build_engine(self.variant, checkpoint, text_folder, device)

    def heatmap(self, query: Query) -> np.ndarray:
        from cxrg_biovil.similarity import similarity_map

        if self._engine is None:
            self.load()
        similarity = similarity_map(self._engine, query.image, query.prompt)
        return np.maximum(similarity, np.float32(0))  # NaN stays NaN


class BioViL(_HiMLModel):
    variant = BIOVIL
    card = _card(BIOVIL, "BioViL (Boecking et al., ECCV 2022)", "CXR-BERT-specialized")


class BioViLT(_HiMLModel):
    variant = BIOVIL_T
    card = _card(BIOVIL_T, "BioViL-T (Bannur et al., CVPR 2023), current image only",
                 "the BioViL-T CXR-BERT")
