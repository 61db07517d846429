"""The cxrg model `maira-2`: MAIRA-2's grounded answer for the phrase, rasterised as a box heatmap.

Importing this module is cheap; torch and transformers load in `load`. The model (7B parameters) and its
processor are loaded from a local copy of the Hugging Face repository microsoft/maira-2 with
`trust_remote_code` (its classes live in that folder), never downloaded. The prompt, the parsing and the
box mapping are this plugin's own (prompt.py, parse.py, geometry.py), written to MAIRA-2's format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxrg.config import weights_root
from cxrg.errors import InputError, MissingWeightsError, NoPrediction
from cxrg.registry import ModelCard, Query, WeightFile
from cxrg_maira2 import __version__
from cxrg_maira2.geometry import box_to_image, boxes_heatmap
from cxrg_maira2.parse import parse_grounded_output
from cxrg_maira2.prompt import phrase_grounding_messages, to_maira_image

REPO = "microsoft/maira-2"
MAX_NEW_TOKENS = 150  # as in the model card's phrase-grounding example
NO_PREDICTION = "no prediction"


class NoPredictionError(NoPrediction):
    """MAIRA-2 answered without any box: recorded per sample as a 'no prediction', not scored."""


def find_folder(root: Path) -> Path:
    folder = root / REPO
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise MissingWeightsError(f"maira-2: the model folder lacks {', '.join(missing)}", where=str(folder),
                                  hint=f"accept the licence on the Hub page of {REPO}, then on a machine "
                                       f"with internet: hf download {REPO} --local-dir {folder}")
    return folder


class Maira2:
    card = ModelCard(
        name="maira-2",
        version=__version__,
        licence="MSRLA (Microsoft Research Licence Agreement, research use only) for the weights; "
                "plugin code Apache-2.0",
        description="MAIRA-2 (Bannur et al. 2024) phrase grounding: the phrase is repeated as a grounded "
                    "phrase with boxes; the union of the boxes is the heatmap (1 inside, 0 elsewhere in the "
                    "centre square the model sees, NaN outside it). Scored by mIoU only, as in the paper.",
        weights=(WeightFile(REPO, "the MAIRA-2 Hugging Face folder: config, remote code, processor, "
                            "tokenizer and safetensors weights (7B parameters)",
                            f"accept the licence on the Hub page of {REPO}, then hf download {REPO} "
                            f"--local-dir $CXRG_HOME/{REPO}"),),
        metrics=("miou",),
        notes=("7B parameters: a GPU with 24 GB or more (bfloat16), or well over 32 GB of RAM on CPU; it "
               "cannot run on cxrg's test machines, whose tests cover the prompt, the parsing, the box "
               "mapping and the rasterisation on MAIRA-2's real output format. Greedy decoding, at most 150 "
               "new tokens. An answer without a box is recorded as 'no prediction' for that sample (left out "
               "of the statistics); `cxrg-maira2-report RUN_DIR` counts them per class (the paper: 129 of "
               "443 on VinDr-CXR)."),
    )

    def __init__(self) -> None:
        self._model: Any = None
        self._processor: Any = None

    def load(self, weights_dir: Path | None = None, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoProcessor

        folder = find_folder(weights_root(weights_dir))
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            # use_fast=False: the numpy image processor, which needs no torchvision
            local = {"trust_remote_code": True, "local_files_only": True}
            self._processor = AutoProcessor.from_pretrained(folder, use_fast=False, **local)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **local)
        except (OSError, ValueError, ImportError) as exc:
            raise InputError(f"cannot load MAIRA-2: {str(exc).splitlines()[0]}", where=str(folder),
                             hint=f"the folder must be a complete download of {REPO}") from exc
        self._model = model.to(device).eval()

    def generate(self, image: np.ndarray, phrase: str) -> str:
        """MAIRA-2's answer for one phrase on one image, as text (special tokens removed, as in its card)."""
        import torch

        if self._model is None:
            self.load()
        tokenizer = self._processor.tokenizer
        text = tokenizer.apply_chat_template(phrase_grounding_messages(phrase), add_generation_prompt=True,
                                             tokenize=False)
        inputs = self._processor(text=text, images=[to_maira_image(image)], return_tensors="pt")
        inputs = inputs.to(device=self._model.device, dtype=self._model.dtype)
        with torch.no_grad():
            output = self._model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                          use_cache=True)
        prompt_length = inputs["input_ids"].shape[-1]
        return self._processor.decode(output[0][prompt_length:], skip_special_tokens=True).lstrip()

    def heatmap(self, query: Query) -> np.ndarray:
        answer = self.generate(query.image, query.prompt)
        height, width = query.image.shape
        boxes = [box_to_image(box, height, width) for phrase in parse_grounded_output(answer)
                 for box in phrase.boxes]
        if not boxes:
            raise NoPredictionError(f"{NO_PREDICTION}: MAIRA-2 answered without a box: {answer[:120]!r}")
        return boxes_heatmap(boxes, height, width)
