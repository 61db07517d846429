"""Phrase-patch similarity map of one image, through hi-ml-multimodal's own pipeline.

hi-ml's `ImageTextInferenceEngine.get_similarity_map_from_raw_data` reads the file itself (DICOM without
its window or MONOCHROME1 inversion, only the suffixes .dcm/.jpg/.jpeg/.png). We start instead from the
image cxrg has read (the protocol's `query.image`) and run the rest of that method unchanged: 8-bit
min-max remap (hi-ml's `remap_to_uint8`), the engine's transform (resize 512, centre crop 480/448),
L2-normalised projected patch embeddings, the projected [CLS] embedding of the phrase, cosine similarity,
Gaussian smoothing (sigma 1.5 patches), and `convert_similarity_to_image_size`: nearest upsampling of the
patch grid to the crop's size in original pixels, NaN outside the crop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrg.errors import InputError

INTERPOLATION = "nearest"  # hi-ml's default, used by the paper's BioViL(-T) evaluation


def to_pil(image: np.ndarray) -> Any:
    """H x W float image -> 8-bit grey PIL image, min-max remapped as hi-ml's `load_image` does."""
    from health_multimodal.image.data.io import remap_to_uint8
    from PIL import Image

    image = np.asarray(image, dtype=np.float64)
    if not np.isfinite(image).all():
        raise InputError("image has non-finite pixel values")
    if image.max() == image.min():  # remap_to_uint8 would divide by zero
        return Image.fromarray(np.zeros(image.shape, np.uint8)).convert("L")
    return Image.fromarray(remap_to_uint8(image)).convert("L")


def similarity_map(engine: Any, image: np.ndarray, prompt: str) -> np.ndarray:
    """H x W float32 cosine similarity between the phrase and each patch, NaN outside the crop."""
    import torch
    from health_multimodal.vlp.inference_engine import ImageTextInferenceEngine

    height, width = np.asarray(image).shape
    image_engine, text_engine = engine.image_inference_engine, engine.text_inference_engine
    device = next(image_engine.model.parameters()).device
    pixels = image_engine.transform(to_pil(image)).unsqueeze(0).to(device)
    try:
        text_embedding = text_engine.get_embeddings_from_prompt(prompt, verbose=False)
    except ValueError as exc:  # a special token such as [CLS] in the phrase, or a phrase too long
        raise InputError(f"BioViL cannot encode the prompt {prompt!r}: {exc}") from exc
    with torch.no_grad():
        patches = image_engine.model.get_patchwise_projected_embeddings(pixels, normalize=True)[0]
    grid = ImageTextInferenceEngine._get_similarity_map_from_embeddings(patches, text_embedding)
    resized = ImageTextInferenceEngine.convert_similarity_to_image_size(
        grid, width=width, height=height, resize_size=image_engine.resize_size,
        crop_size=image_engine.crop_size, val_img_transform=image_engine.transform,
        interpolation=INTERPOLATION)
    return np.asarray(resized, dtype=np.float32)
