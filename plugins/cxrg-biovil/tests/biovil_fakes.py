"""Random-weight BioViL / BioViL-T files in the layouts the plugin loads, built from hi-ml's real classes.

The image checkpoints are state dicts of hi-ml's ImageModel (ResNet-50, and ResNet-50 multi-image for
BioViL-T) saved with torch.save, as published; the text models are tiny CXRBertModel configurations with a
word-piece vocabulary written here, saved with save_pretrained into folders named like the Hub
repositories. BioViL's text model is saved as safetensors, BioViL-T's as pytorch_model.bin (as on the Hub),
so both formats are exercised.
"""

from __future__ import annotations

from pathlib import Path

import torch
from cxrg_biovil.variants import BIOVIL, BIOVIL_T, JOINT_FEATURE_SIZE, Variant
from health_multimodal.image.model.model import ImageModel
from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer

WORDS = ("left right bilateral lower upper middle apical basal pleural effusion opacity opacities "
         "pneumonia pneumothorax atelectasis consolidation edema cardiomegaly lung lobe small large "
         "patchy the of and with in no ##s ##al ##ic").split()
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def write_text_model(folder: Path, seed: int, safetensors: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join((*SPECIAL, *WORDS)) + "\n")
    CXRBertTokenizer(vocab_file=str(vocab), do_lower_case=True).save_pretrained(folder)
    config = CXRBertConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                           projection_size=JOINT_FEATURE_SIZE)
    torch.manual_seed(seed)
    CXRBertModel(config).save_pretrained(folder, safe_serialization=safetensors)


def write_image_checkpoint(path: Path, variant: Variant, seed: int) -> None:
    torch.manual_seed(seed)
    model = ImageModel(img_encoder_type=variant.image_encoder, joint_feature_size=JOINT_FEATURE_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)


# Seeds whose random similarities are not all negative (the maps are clamped at 0; all-negative would make
# every map constant and the bench numbers degenerate).
SEEDS = {BIOVIL: 0, BIOVIL_T: 7}


def write_weights(root: Path) -> Path:
    """Both models under `root`, in the Hub layout (checkpoint inside the text model's folder)."""
    for variant, seed in SEEDS.items():
        folder = root / variant.text_repo
        write_text_model(folder, seed, safetensors=variant is BIOVIL)
        write_image_checkpoint(folder / variant.checkpoint, variant, seed)
    return root
