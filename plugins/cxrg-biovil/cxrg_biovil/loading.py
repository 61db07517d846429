"""Build hi-ml-multimodal's inference engines from local files only.

hi-ml's own helpers (get_biovil_image_encoder, get_bert_inference) download from the Hub; here the same
classes are built and filled from the files found by `weights.py`: the image model with
`torch.load(weights_only=True)` and a strict key check, the text model and tokenizer with
`from_pretrained(folder, local_files_only=True)`. Any unreadable or mismatched file is an InputError
naming it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from cxrg.errors import InputError
from cxrg_biovil.variants import JOINT_FEATURE_SIZE, RESIZE, Variant


def load_image_model(variant: Variant, checkpoint: Path) -> Any:
    import torch
    from health_multimodal.image.model.model import ImageModel

    # freeze_encoder: ImageModel.forward re-enables autograd unless frozen; inference needs no graph
    model = ImageModel(img_encoder_type=variant.image_encoder, joint_feature_size=JOINT_FEATURE_SIZE,
                       freeze_encoder=True)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that is not a plain state dict
        raise InputError(f"cannot read the {variant.name} image checkpoint: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}", where=str(checkpoint),
                         hint="download it again") from exc
    if not isinstance(state, dict):
        raise InputError(f"the {variant.name} image checkpoint is not a state dict", where=str(checkpoint))
    expected, found = set(model.state_dict()), set(state)
    if expected != found:
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        raise InputError(
            f"the checkpoint does not fit the {variant.name} image model ({variant.image_encoder}): "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]})", where=str(checkpoint),
            hint=f"{variant.name} needs {variant.checkpoint}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # right keys, wrong shapes
        raise InputError(f"the checkpoint does not fit the {variant.name} image model: "
                         f"{str(exc).splitlines()[-1].strip()}", where=str(checkpoint)) from exc
    return model.eval()


def load_text_model(variant: Variant, folder: Path) -> tuple[Any, Any]:
    from health_multimodal.text.model import CXRBertModel, CXRBertTokenizer

    try:
        tokenizer = CXRBertTokenizer.from_pretrained(folder, local_files_only=True)
        model = CXRBertModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot load the {variant.name} text model: {str(exc).splitlines()[0]}",
                         where=str(folder), hint=f"the folder must be a download of {variant.text_repo}"
                         ) from exc
    size = getattr(model.config, "projection_size", None)
    if size != JOINT_FEATURE_SIZE:
        raise InputError(f"the {variant.name} text model projects to {size}, the image model to "
                         f"{JOINT_FEATURE_SIZE}", where=str(folder / "config.json"))
    return tokenizer, model.eval()


def build_engine(variant: Variant, checkpoint: Path, text_folder: Path, device: str = "cpu") -> Any:
    """hi-ml's ImageTextInferenceEngine for one variant, on `device`."""
    import torch

    with warnings.catch_warnings():  # timm's and transformers' deprecation notices, not the user's business
        warnings.simplefilter("ignore")
        from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference
        from health_multimodal.image.inference_engine import ImageInferenceEngine
        from health_multimodal.text.inference_engine import TextInferenceEngine
        from health_multimodal.vlp.inference_engine import ImageTextInferenceEngine

        image_model = load_image_model(variant, checkpoint)
        tokenizer, text_model = load_text_model(variant, text_folder)
    transform = create_chest_xray_transform_for_inference(resize=RESIZE, center_crop_size=variant.crop_size)
    engine = ImageTextInferenceEngine(
        image_inference_engine=ImageInferenceEngine(image_model=image_model, transform=transform),
        text_inference_engine=TextInferenceEngine(tokenizer=tokenizer, text_model=text_model))
    engine.to(torch.device(device))
    return engine
