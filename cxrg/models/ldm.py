"""The paper's models: the chest X-ray LDM, frozen (`ldm-frozen`) or with tuned anatomy embeddings (`ldm`).

Settings are typed options (`cxrg models info ldm`): the command line (`--dtype`, `--embeddings`,
`-o key=value`), cxrg.toml ([ldm] for both, [models.ldm] / [models.ldm-frozen] for one, top-level dtype and
embeddings), the environment (cxrg.config), then the defaults here. Heatmap options left unset keep the
paper's settings (cxrg.ldm.config.HeatmapSettings).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxrg import __version__
from cxrg.errors import InputError, MissingWeightsError, UsageError
from cxrg.ldm.weights import BUNDLE, HOW_TO_GET_BUNDLE, HOW_TO_GET_TEXT, TEXT_REPO, TUNED_EMBEDDINGS
from cxrg.registry import HeatmapQuery, ModelCard, WeightFile, option

LDM_WEIGHTS = (
    WeightFile(f"{BUNDLE}/models/autoencoder.pth", "MONAI CXR LDM autoencoder (Apache-2.0)",
               HOW_TO_GET_BUNDLE),
    WeightFile(f"{BUNDLE}/models/diffusion_model.pth", "MONAI CXR LDM diffusion U-Net (Apache-2.0)",
               HOW_TO_GET_BUNDLE),
    WeightFile(f"{TEXT_REPO}/text_encoder/", "Stable Diffusion 2.1-base CLIP text encoder (CreativeML "
               "Open RAIL++-M)", HOW_TO_GET_TEXT),
)
HEATMAP_KEYS = ("inference_steps", "capture_steps", "capture_order", "layers", "smoothing_sigma",
                "timestep_spacing", "upsampling", "otsu")
WINDOW_KEYS = ("capture_order", "capture_steps", "inference_steps", "timestep_spacing", "layers")


@dataclass(frozen=True)
class _LdmOptions:
    """The options both LDM models take."""

    dtype: str = option("float32", "U-Net, autoencoder and text encoder precision", "str",
                        ("float32", "bfloat16", "float16"))
    batch: int = option(10, "conditional U-Net passes per call", "int", minimum=1)
    attention: str = option("sdpa", "attention nothing captures: sdpa (torch's fused kernel) or explicit "
                            "(softmax written out; captured layers always are)", "str", ("sdpa", "explicit"))
    batch_invariant: bool = option(True, "an image's heatmap has the same bits at any --batch-size "
                                   "(convolutions and group norms run per image); false: faster, equal to "
                                   "rounding", "bool")
    inference_steps: int | None = option(None, "DDIM steps of the inversion (paper: 100)", "int", minimum=1)
    capture_steps: tuple[int, ...] | None = option(None, "captured step indices as start,stop (paper: 30,60)",
                                                   "ints")
    capture_order: str | None = option(None, "how capture steps are counted: denoising (noise -> image, the "
                                       "paper) or inversion", "str", ("denoising", "inversion"))
    layers: tuple[str, ...] | None = option(None, "captured cross-attention layers (comma-separated names)",
                                            "strs")
    smoothing_sigma: float | None = option(None, "Gaussian filter sigma in pixels at 512 (2.5)", "float",
                                           minimum=0)
    timestep_spacing: str | None = option(None, "DDIM grid: leading or trailing (default: the protocol's)",
                                          "str", ("leading", "trailing"))
    upsampling: str | None = option(None, "model map -> image pixels: bilinear or nearest (default: the "
                                    "protocol's)", "str", ("bilinear", "nearest"))


@dataclass(frozen=True)
class LdmFrozenOptions(_LdmOptions):
    otsu: bool | None = option(None, "keep only the pixels above the Otsu threshold (frozen: on)", "bool")


@dataclass(frozen=True)
class LdmTunedOptions(_LdmOptions):
    embeddings: Path | None = option(None, "tuned embeddings file (default <weights>/tuned_embeddings."
                                     "safetensors)", "path")
    allow_window_mismatch: bool = option(False, "use embeddings tuned on another capture window", "bool")


def heatmap_settings(options: Any, otsu_default: bool):
    """HeatmapSettings from the options: unset ones keep the paper's values."""
    from cxrg.ldm.config import HeatmapSettings

    table = {k: getattr(options, k) for k in HEATMAP_KEYS if getattr(options, k, None) is not None}
    if "capture_steps" in table and len(table["capture_steps"]) != 2:
        raise UsageError(f"capture_steps must be start,stop, got {list(table['capture_steps'])}")
    return HeatmapSettings(otsu=otsu_default).with_overrides(table)


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
    Options: type = LdmFrozenOptions
    otsu = True

    def __init__(self) -> None:
        self.engine: Any = None
        self.settings: Any = None

    def load(self, weights_dir: Path | None = None, device: str = "cpu", options: Any = None) -> None:
        from cxrg.ldm.heatmap import LdmEngine
        from cxrg.ldm.loading import load_ldm

        options = options or self.Options()
        self.settings = heatmap_settings(options, self.otsu)
        self._check_weights(weights_dir, options)
        ldm = load_ldm(weights_dir, device=device, dtype=options.dtype)
        codebook = self._codebook(ldm, weights_dir, options)  # may adopt the embeddings' DDIM grid
        self.engine = LdmEngine(ldm, self.settings, codebook, batch_size=options.batch,
                                 attention=options.attention, batch_invariant=options.batch_invariant)

    def _check_weights(self, weights_dir: Path | None, options: Any) -> None:
        """Nothing beyond what load_ldm checks."""

    def _codebook(self, ldm, weights_dir: Path | None, options: Any):
        return None

    def _check_prompt(self, prompt: str) -> None:
        """Any prompt is fine for the frozen model."""

    def heatmap(self, query: HeatmapQuery) -> np.ndarray:
        return self.heatmaps([query])[0]

    def heatmaps(self, queries: Sequence[HeatmapQuery]) -> list[np.ndarray]:
        """Several prompts on one or several images at once: the images inverted together (batch N
        images), the conditional passes of all their prompts batched (LdmEngine.heatmaps_batch); maps in
        the queries' order, each equal to its one-image call's (bit for bit with batch_invariant)."""
        if self.engine is None:
            self.load()
        assert self.engine is not None
        for query in queries:
            self._check_prompt(query.prompt)
        by_image: dict[int, list[int]] = {}
        for k, query in enumerate(queries):
            by_image.setdefault(id(query.image), []).append(k)
        groups = list(by_image.values())
        out: list[np.ndarray | None] = [None] * len(queries)
        for start in range(0, len(groups), MAX_IMAGES_PER_CALL):
            chunk = groups[start:start + MAX_IMAGES_PER_CALL]
            maps = self.engine.heatmaps_batch([queries[g[0]].image for g in chunk],
                                              [[queries[k].prompt for k in g] for g in chunk])
            for group, group_maps in zip(chunk, maps, strict=True):
                for k, heat in zip(group, group_maps, strict=True):
                    out[k] = heat
        return [m for m in out if m is not None]


MAX_IMAGES_PER_CALL = 64
"""At most this many images are inverted together, however many a caller passes (memory)."""


class LdmTunedModel(LdmFrozenModel):
    """The LDM with the anatomy token embeddings tuned by `cxrg tune` (the paper's method)."""

    card = ModelCard(
        name="ldm",
        prompts="vocabulary",
        version=__version__,
        licence="Apache-2.0 (code); weights under their own licences",
        description="Chest X-ray LDM with prompt-tuned anatomy embeddings (Vilouras et al., MIDL 2026): "
                    "cross-attention heatmaps of '{location} {pathology}' prompts.",
        weights=(*LDM_WEIGHTS, WeightFile(TUNED_EMBEDDINGS, "tuned embeddings from `cxrg tune` "
                                          "(or --embeddings FILE / -o embeddings=FILE)", "cxrg tune")),
        notes="Only vocabulary prompts ('<location> [and <location>] <pathology>'); use ldm-frozen for free "
              "text.",
    )
    Options: type = LdmTunedOptions
    otsu = False

    def _embeddings_path(self, weights_dir: Path | None, options: Any) -> Path:
        from cxrg.config import weights_root
        from cxrg.ldm.weights import WeightPaths

        return Path(options.embeddings or WeightPaths(weights_root(weights_dir)).tuned_embeddings)

    def _check_weights(self, weights_dir: Path | None, options: Any) -> None:
        """One clear message when the tuned model cannot run: what is missing and which command fixes it."""
        from cxrg.config import weights_root
        from cxrg.ldm.weights import WeightPaths

        paths = WeightPaths(weights_root(weights_dir))
        missing = [(what, path) for what, path, present, _ in paths.status() if not present
                   and path != paths.tuned_embeddings]
        if missing:
            what, path = missing[0]
            more = f" (and {len(missing) - 1} more file(s))" if len(missing) > 1 else ""
            raise MissingWeightsError(f"the ldm model needs its weights: {what} not found{more}",
                                      where=str(path),
                                      hint="run `cxrg weights fetch` (or place them as `cxrg weights status` "
                                           "lists), then `cxrg tune`; or use --model prior (no weights)")
        tuned = self._embeddings_path(weights_dir, options)
        if not tuned.is_file():
            raise MissingWeightsError("the ldm model needs tuned embeddings", where=str(tuned),
                                      hint="run `cxrg tune` (it installs them), or pass --embeddings FILE; "
                                           "or use --model ldm-frozen (LDM without tuning) or --model prior")

    def _codebook(self, ldm, weights_dir: Path | None, options: Any):
        from cxrg.ldm.text import Codebook

        path = self._embeddings_path(weights_dir, options)
        codebook, meta = Codebook.load(path, fingerprint=ldm.fingerprint)
        grid = tuned_window(meta).get("timestep_spacing")
        if options.timestep_spacing is None and grid in ("leading", "trailing"):
            # not set by the user: the grid the embeddings were tuned on (`cxrg tune --protocol ...`)
            self.settings = self.settings.with_changes(timestep_spacing=grid)
        check_window(meta, self.settings, int(ldm.architecture.scheduler["num_train_timesteps"]), path,
                     options.allow_window_mismatch)
        return codebook

    def _check_prompt(self, prompt: str) -> None:
        from cxrg.ldm.text import check_in_vocabulary

        check_in_vocabulary(prompt)


def tuned_window(meta: dict[str, str]) -> dict[str, Any]:
    """The capture window a tuned-embeddings file was made with. Files from before the window was recorded
    carry it in their hyperparameters, counted in inversion order (cxrg before 0.2)."""
    if "window" in meta:
        return json.loads(meta["window"])
    settings = json.loads(meta.get("hyperparameters", "{}")).get("settings", {})
    steps = settings.get("capture_steps") or []
    return {"capture_order": settings.get("capture_order", "inversion"),
            "capture_steps": [min(steps), max(steps) + 1] if steps else None,
            "inference_steps": settings.get("inference_steps"),
            "timestep_spacing": settings.get("timestep_spacing"), "layers": settings.get("layers")}


def check_window(meta: dict[str, str], settings: Any, train_steps: int, path: Path, allow: bool) -> None:
    """Refuse embeddings tuned on another capture window than the heatmaps use, unless allowed."""
    tuned = tuned_window(meta)
    used = settings.window(train_steps)
    differ = [k for k in WINDOW_KEYS if tuned.get(k) is not None and tuned.get(k) != used[k]]
    if differ and not allow:
        key = differ[0]
        raise InputError(f"these tuned embeddings were made with {key} {tuned[key]!r}, the heatmaps use "
                         f"{used[key]!r}", where=str(path),
                         hint="set the same [ldm] settings as the tuning run, tune again, or pass "
                              "-o allow_window_mismatch=true")

