"""The unconditional DDIM trajectory of each training image, computed once and cached on disk.

The inversion runs with the unconditional ("") prompt, so the latents entering the captured steps do not
depend on the embeddings being tuned: computing them once and reusing them every epoch is exact, not an
approximation. A cache entry is keyed by the model input (the image after resize and crop), a fingerprint
of the autoencoder and U-Net weights, and the schedule settings; it is a safetensors file of the latents
(float32, or float16 to halve the disk).

`precompute` (and cxrg.tuning.trainer.precompute_trajectories for a trainer's coming steps) computes the
missing entries `batch_size` images at a time, one U-Net call per inversion step for the whole batch,
before the fast steps need them; each entry equals the one-image computation to float rounding
(tests/test_batching.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
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


DEFAULT_BATCH = 4
"""Images inverted together when trajectories are precomputed (`TrajectoryCache.batch_size`)."""


class TrajectoryCache:
    def __init__(self, engine: LdmEngine, folder: Path, dtype: str = "float32",
                 batch_size: int = DEFAULT_BATCH) -> None:
        self.engine = engine
        self.batch_size = batch_size
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
        self._fresh: set[str] = set()

    def key(self, pixels: torch.Tensor) -> str:
        digest = hashlib.sha256(self.model_key.encode())
        digest.update(pixels.float().cpu().numpy().tobytes())
        return digest.hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """(captured steps, C, h, w) latents entering the captured steps, from the cache or computed."""
        from safetensors.torch import load_file

        key = self.key(pixels)
        path = self.path(key)
        if path.is_file():
            if key in self._fresh:
                self._fresh.discard(key)  # computed by precompute: counted there
            else:
                self.hits += 1
            latents = load_file(str(path))["latents"]
        else:
            self.misses += 1
            with torch.inference_mode():
                latents = self._store(key, self.engine.trajectory(pixels))
        return latents.to(self.engine.ldm.device, self.engine.ldm.dtype)

    def _store(self, key: str, trajectory: dict[int, torch.Tensor]) -> torch.Tensor:
        from safetensors.torch import save_file

        from cxrg.runs import atomic_write_bytes

        steps = self.engine.settings.inversion_steps
        latents = torch.cat([trajectory[i] for i in steps]).to(self.dtype).cpu().clone()
        path = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"latents": latents.contiguous()}, str(tmp))
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink()
        return latents

    def precompute(self, groups: Iterable[Sequence[torch.Tensor]]) -> int:
        """Compute the missing entries, one inversion per group (all its images at once); returns how
        many were stored. A group with any entry missing is computed whole, in its own order, so what is
        stored depends only on the group, never on what an interrupted run had already stored."""
        computed = 0
        for group in groups:
            keyed = dict(zip((self.key(p) for p in group), group, strict=True))
            missing = [k for k in keyed if not self.path(k).is_file()]
            if not missing:
                continue
            self.engine.forget()  # the engine's own cache would take images out of the batch
            with torch.inference_mode():
                trajectories = self.engine.trajectories(list(keyed.values()))
            for key, trajectory in zip(keyed, trajectories, strict=True):
                if key in missing:
                    self._store(key, trajectory)
                    self._fresh.add(key)
            self.misses += len(missing)
            computed += len(missing)
        self.engine.forget()
        return computed
