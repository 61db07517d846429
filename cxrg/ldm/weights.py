"""Where the LDM's weights live on disk, what is missing, and a tiny random model in the same layout.

Layout under the weights folder (`--weights DIR`, else `$CXRG_HOME`, else ~/.cache/cxrg):

    cxr_image_synthesis_latent_diffusion_model/      the MONAI model-zoo bundle, as unpacked
        configs/inference.json                        (optional: the architecture is read from it)
        models/autoencoder.pth
        models/diffusion_model.pth
    stable-diffusion-2-1-base/                        a snapshot of stabilityai/stable-diffusion-2-1-base
        text_encoder/config.json, model.safetensors (or pytorch_model.bin)
        tokenizer/                                    (optional: cxrg builds the same tokenizer offline)
    tuned_embeddings.safetensors                      (optional: the default tuned embeddings for `ldm`)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cxrg.errors import MissingWeightsError

BUNDLE = "cxr_image_synthesis_latent_diffusion_model"
TEXT_REPO = "stable-diffusion-2-1-base"
TEXT_REPO_ID = "stabilityai/stable-diffusion-2-1-base"
TUNED_EMBEDDINGS = "tuned_embeddings.safetensors"
HOW_TO_GET_BUNDLE = ("the MONAI bundle cxr_image_synthesis_latent_diffusion_model: `cxrg weights fetch` "
                     "(online; it tries the Hugging Face copy named by --bundle-repo), or download the files "
                     "linked from Project-MONAI/GenerativeModels "
                     "model-zoo/models/cxr_image_synthesis_latent_diffusion_model/large_files.yml and "
                     "place them as models/autoencoder.pth and models/diffusion_model.pth")
HOW_TO_GET_TEXT = (f"`cxrg weights fetch`, or `huggingface-cli download {TEXT_REPO_ID} --include "
                   f"'text_encoder/*' 'tokenizer/*' --local-dir <weights>/{TEXT_REPO}`")




@dataclass(frozen=True)
class WeightPaths:
    root: Path

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE

    @property
    def autoencoder(self) -> Path:
        return self.bundle / "models" / "autoencoder.pth"

    @property
    def unet(self) -> Path:
        return self.bundle / "models" / "diffusion_model.pth"

    @property
    def text_encoder(self) -> Path:
        return self.root / TEXT_REPO / "text_encoder"

    @property
    def tokenizer(self) -> Path:
        return self.root / TEXT_REPO / "tokenizer"

    @property
    def tuned_embeddings(self) -> Path:
        return self.root / TUNED_EMBEDDINGS

    def text_encoder_weights(self) -> Path | None:
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (self.text_encoder / name).is_file():
                return self.text_encoder / name
        return None

    def status(self) -> list[tuple[str, Path, bool, str]]:
        """(what, where, present, how to get it) for every file the LDM needs."""
        text_weights = self.text_encoder_weights()
        return [
            ("LDM autoencoder", self.autoencoder, self.autoencoder.is_file(), HOW_TO_GET_BUNDLE),
            ("LDM diffusion U-Net", self.unet, self.unet.is_file(), HOW_TO_GET_BUNDLE),
            ("SD 2.1 text encoder config", self.text_encoder / "config.json",
             (self.text_encoder / "config.json").is_file(), HOW_TO_GET_TEXT),
            ("SD 2.1 text encoder weights", text_weights or self.text_encoder / "model.safetensors",
             text_weights is not None, HOW_TO_GET_TEXT),
        ]

    def require(self) -> None:
        """Raise one clear error naming the first missing file, where we looked and how to get it."""
        for what, path, present, how in self.status():
            if not present:
                raise MissingWeightsError(f"{what} not found", where=str(path),
                                          hint=f"{how}; or point --weights / $CXRG_HOME at the folder that "
                                               "holds it (`cxrg weights status` lists everything); "
                                               "`--model prior` works without weights")
