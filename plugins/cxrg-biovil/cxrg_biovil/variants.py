"""The two hi-ml image-text models: which image encoder, crop, text model and checkpoint each one uses.

Facts from hi-ml-multimodal 0.2.2 (health_multimodal.image.utils.get_image_inference and
image.model.pretrained): both resize the shortest side to 512; BioViL crops 480 (15 x 15 patch grid),
BioViL-T 448 (14 x 14); both project to a 128-d joint space. On the Hugging Face Hub each image checkpoint
lives in the repository of its text model, so one downloaded folder per model holds everything.
"""

from __future__ import annotations

from dataclasses import dataclass

RESIZE = 512
JOINT_FEATURE_SIZE = 128


@dataclass(frozen=True)
class Variant:
    name: str
    image_encoder: str
    """health_multimodal ImageEncoderType value."""
    crop_size: int
    text_repo: str
    """Hugging Face repository of the text model; also the folder name under the weights folder."""
    text_revision: str
    """The revision hi-ml-multimodal 0.2.2 loads (its CXR_BERT_COMMIT_TAG / BIOVIL_T_COMMIT_TAG)."""
    checkpoint: str
    """Image encoder checkpoint file name, as published in `text_repo`."""


BIOVIL = Variant(name="biovil", image_encoder="resnet50", crop_size=480,
                 text_repo="microsoft/BiomedVLP-CXR-BERT-specialized", text_revision="v1.1",
                 checkpoint="biovil_image_resnet50_proj_size_128.pt")

BIOVIL_T = Variant(name="biovil-t", image_encoder="resnet50_multi_image", crop_size=448,
                   text_repo="microsoft/BiomedVLP-BioViL-T", text_revision="v1.0",
                   checkpoint="biovil_t_image_model_proj_size_128.pt")
