"""The unconditional DDIM trajectory of each training image, computed once and cached on disk.

The inversion runs with the unconditional ("") prompt, so the latents entering the captured steps do not
depend on the embeddings being tuned: computing them once and reusing them every epoch is exact, not an
approximation. A cache entry is keyed by the model input (the image after resize and crop), a fingerprint
of the autoencoder and U-Net weights, and the schedule settings; it is a safetensors file of the latents
(float32, or float16 to halve the disk).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from cxrg.ldm.heatmap import LdmEngine


def module_fingerprint(module: torch.nn.Module) -> str:
    """A cheap identity of a network's weights: every tensor's name, shape and first 4,096 values."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().flatten()[:4096].float().cpu().numpy().tobytes())
    return digest.hexdigest()[:24]


class TrajectoryCache:
    def __init__(self, engine: LdmEngine, folder: Path, dtype: str = "float32") -> None:
        self.engine = engine
        self.folder = Path(folder)
        self.dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
        settings = engine.settings
        self.model_key = json.dumps({
            "weights": module_fingerprint(engine.ldm.unet) + module_fingerprint(engine.ldm.autoencoder),
            "steps": settings.inference_steps, "spacing": settings.timestep_spacing,
            "captured": list(settings.inversion_steps), "size": engine.size,
            "scheduler": engine.ldm.architecture.scheduler}, sort_keys=True)
        self.hits = 0
        self.misses = 0

    def key(self, pixels: torch.Tensor) -> str:
        digest = hashlib.sha256(self.model_key.encode())
        digest.update(pixels.float().cpu().numpy().tobytes())
        return digest.hexdigest()[:40]

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """(captured steps, C, h, w) latents entering the captured steps, from the cache or computed."""
        from safetensors.torch import load_file, save_file

        from cxrg.runs import atomic_write_bytes

        path = self.folder / f"{self.key(pixels)}.safetensors"
        if path.is_file():
            self.hits += 1
            latents = load_file(str(path))["latents"]
        else:
            self.misses += 1
            with torch.inference_mode():
                trajectory = self.engine.trajectory(pixels)
            steps = self.engine.settings.inversion_steps
            latents = torch.cat([trajectory[i] for i in steps]).to(self.dtype).cpu().clone()
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            save_file({"latents": latents.contiguous()}, str(tmp))
            atomic_write_bytes(path, tmp.read_bytes())
            tmp.unlink()
        return latents.to(self.engine.ldm.device, self.engine.ldm.dtype)
