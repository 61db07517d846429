"""The CXR LDM's architecture and the heatmap settings, as plain data.

Architecture: the MONAI model-zoo bundle `cxr_image_synthesis_latent_diffusion_model` (Pinaya et al.,
Apache-2.0), configs/inference.json, checked against Project-MONAI/GenerativeModels. One difference from
the values quoted in our issue tracker: the bundle's autoencoder has `with_encoder_nonlocal_attn` and
`with_decoder_nonlocal_attn` set to **true**; we follow the bundle (its checkpoint carries those weights).
When a bundle folder holds configs/inference.json, the architecture is read from it instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cxrg.errors import InputError

BUNDLE_AUTOENCODER: dict[str, Any] = {
    "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "latent_channels": 3,
    "channels": [64, 128, 128, 128], "num_res_blocks": 2, "norm_num_groups": 32, "norm_eps": 1e-6,
    "attention_levels": [False, False, False, False],
    "with_encoder_nonlocal_attn": True, "with_decoder_nonlocal_attn": True,
}
BUNDLE_UNET: dict[str, Any] = {
    "spatial_dims": 2, "in_channels": 3, "out_channels": 3, "channels": [256, 512, 768],
    "num_res_blocks": 2, "attention_levels": [False, True, True], "norm_num_groups": 32, "norm_eps": 1e-6,
    "resblock_updown": False, "num_head_channels": [0, 512, 768], "with_conditioning": True,
    "transformer_num_layers": 1, "cross_attention_dim": 1024,
}
BUNDLE_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000, "schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0205,
    "prediction_type": "v_prediction", "clip_sample": False,
}
CAPTURE_ORDERS = ("denoising", "inversion")
UPSAMPLING = ("bilinear", "nearest")
TIMESTEP_SPACINGS = ("leading", "trailing")
LATENT_SCALE = 0.3
IMAGE_SIZE = 512

# The bottleneck and the first three decoder cross-attentions: all 16 x 16 at a 512 input.
DEFAULT_LAYERS = (
    "middle_block.attention.transformer_blocks.0.attn2",
    "up_blocks.0.attentions.0.transformer_blocks.0.attn2",
    "up_blocks.0.attentions.1.transformer_blocks.0.attn2",
    "up_blocks.0.attentions.2.transformer_blocks.0.attn2",
)


@dataclass(frozen=True)
class LdmArchitecture:
    autoencoder: dict[str, Any] = field(default_factory=lambda: dict(BUNDLE_AUTOENCODER))
    unet: dict[str, Any] = field(default_factory=lambda: dict(BUNDLE_UNET))
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(BUNDLE_SCHEDULER))
    latent_scale: float = LATENT_SCALE
    image_size: int = IMAGE_SIZE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LdmArchitecture:
        return cls(**{k: data[k] for k in ("autoencoder", "unet", "scheduler", "latent_scale", "image_size")
                      if k in data})


@dataclass(frozen=True)
class HeatmapSettings:
    """Every number of the heatmap pipeline (Vilouras et al. 2024, with the paper's settings)."""

    inference_steps: int = 100
    """DDIM steps of the inversion (1000 training steps / 100 = one every 10)."""
    capture_steps: tuple[int, ...] = tuple(range(30, 60))
    """Step indices, counted in `capture_order`. The paper (Section 3.3): "following the reverse diffusion
    process (mapping from noise to image latents), we extract the intermediate cross-attention activations
    from 30 timesteps (in range [30, 60])": with 100 'leading' steps, t = 690, 680, ..., 400."""
    capture_order: str = "denoising"
    """How `capture_steps` are counted: "denoising" (noise -> image, the paper's words; the default) or
    "inversion" (image -> noise, t = 300..590 for 30..59: what cxrg did before 0.2 and the predecessor's
    practice)."""
    layers: tuple[str, ...] = DEFAULT_LAYERS
    smoothing_sigma: float = 2.5
    """Gaussian filter sigma, in pixels of the 512 map."""
    otsu: bool = True
    """Keep only the pixels above the Otsu threshold (the frozen model's default; off for the tuned one)."""
    timestep_spacing: str = "leading"
    """DDIM grid: "leading" t = 0, 10, ..., 990 (cxrg; captured t = 690..400) or "trailing" t = 9, 19, ...,
    999 (the Vilouras 2024 code's set_timesteps(..., "trailing"); captured t = 699..409): the protocol
    choice timestep_spacing (cxrg/protocol.py; the paper protocol uses trailing)."""
    upsampling: str = "bilinear"
    """How the model-space map goes back to the image's pixels: "bilinear" (cxrg) or "nearest" (the
    Vilouras 2024 evaluation's F.interpolate(mode="nearest"); the paper protocol)."""

    def __post_init__(self) -> None:
        """Every value's type and range, whatever set it (cxrg.toml, -o, the library): one usage line."""
        from cxrg.config import check_number
        from cxrg.errors import UsageError

        if self.capture_order not in CAPTURE_ORDERS:
            raise UsageError(f"unknown capture_order {self.capture_order!r}",
                             hint=f"choose {' or '.join(CAPTURE_ORDERS)}")
        if self.upsampling not in UPSAMPLING:
            raise UsageError(f"unknown upsampling {self.upsampling!r}",
                             hint=f"choose {' or '.join(UPSAMPLING)}")
        check_number("inference_steps", self.inference_steps, minimum=1, whole=True)
        check_number("smoothing_sigma", self.smoothing_sigma, minimum=0)
        steps = list(self.capture_steps)
        if not steps or any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.inference_steps
                            for k in steps):
            whole = steps and all(isinstance(k, int) for k in steps)
            shown = f"{min(steps)}..{max(steps)}" if whole else steps
            raise UsageError(f"capture_steps {shown} must be step indices in 0..{self.inference_steps - 1} "
                             f"(inference_steps = {self.inference_steps})", hint="e.g. capture_steps 30,60")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise UsageError(f"unknown timestep_spacing {self.timestep_spacing!r}",
                             hint=f"choose {' or '.join(TIMESTEP_SPACINGS)}")
        if not self.layers or not all(isinstance(name, str) and name for name in self.layers):
            raise UsageError(f"layers {list(self.layers)!r} must name at least one cross-attention layer")
        if not isinstance(self.otsu, bool):
            raise UsageError(f"otsu = {self.otsu!r} must be true or false")

    @property
    def inversion_steps(self) -> tuple[int, ...]:
        """The captured steps as indices of the inversion (image -> noise), in the order given."""
        if self.capture_order == "inversion":
            return tuple(self.capture_steps)
        return tuple(self.inference_steps - 1 - k for k in self.capture_steps)

    def window(self, train_steps: int = 1000) -> dict[str, Any]:
        """What defines the captured window, for run configs and the tuned embeddings' metadata."""
        from cxrg.ldm.ddim import inversion_timesteps

        grid = inversion_timesteps(self.inference_steps, train_steps, self.timestep_spacing)
        times = [grid[i] for i in self.inversion_steps if 0 <= i < len(grid)]
        return {"capture_order": self.capture_order, "capture_steps": [min(self.capture_steps),
                                                                      max(self.capture_steps) + 1],
                "inference_steps": self.inference_steps, "timestep_spacing": self.timestep_spacing,
                "timesteps": [max(times), min(times)] if times else [], "layers": list(self.layers)}

    def with_changes(self, **changes: Any) -> HeatmapSettings:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "capture_steps": list(self.capture_steps), "layers": list(self.layers)}

    def with_overrides(self, table: dict[str, Any] | None) -> HeatmapSettings:
        """Settings changed by an [ldm] table of cxrg.toml (capture_steps as [start, stop))."""
        if not table:
            return self
        known = {"inference_steps", "capture_steps", "layers", "smoothing_sigma", "otsu", "timestep_spacing",
                 "capture_order", "upsampling"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise InputError(f"unknown [ldm] setting(s) {', '.join(unknown)}",
                             hint=f"known: {', '.join(sorted(known))}")
        changes = dict(table)
        if "capture_steps" in changes:
            start, stop = changes["capture_steps"]
            if not int(start) < int(stop):
                from cxrg.errors import UsageError

                raise UsageError(f"capture_steps {start},{stop} must be start,stop with start < stop",
                                 hint="e.g. capture_steps 30,60")
            changes["capture_steps"] = tuple(range(int(start), int(stop)))
        if "layers" in changes:
            changes["layers"] = tuple(changes["layers"])
        return replace(self, **changes)


def architecture_from_bundle(bundle: Path) -> LdmArchitecture:
    """The architecture written in a bundle's configs/inference.json, or the built-in bundle values.

    A tiny test model written by `cxrg weights tiny` carries configs/cxrg_architecture.json instead.
    """
    ours = bundle / "configs" / "cxrg_architecture.json"
    if ours.is_file():
        return LdmArchitecture.from_dict(json.loads(ours.read_text()))
    inference = bundle / "configs" / "inference.json"
    if not inference.is_file():
        return LdmArchitecture()
    try:
        config = json.loads(inference.read_text())
        autoencoder = _network_params(config["autoencoder_def"])
        unet = _network_params(config["diffusion_def"])
        sched = config.get("scheduler", {})
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise InputError(f"cannot read the bundle's network definitions: {exc}",
                         where=str(inference)) from exc
    scheduler = dict(BUNDLE_SCHEDULER)
    for key in ("num_train_timesteps", "beta_start", "beta_end", "prediction_type", "clip_sample"):
        if key in sched:
            scheduler[key] = sched[key]
    if "beta_schedule" in sched:
        scheduler["schedule"] = {"scaled_linear": "scaled_linear_beta", "linear": "linear_beta"}.get(
            sched["beta_schedule"], sched["beta_schedule"])
    return LdmArchitecture(autoencoder, unet, scheduler)


def _network_params(definition: dict[str, Any]) -> dict[str, Any]:
    """GenerativeModels' constructor arguments -> MONAI core's (num_channels was renamed channels)."""
    params = {k: v for k, v in definition.items() if not k.startswith("_")}
    if "num_channels" in params:
        params["channels"] = params.pop("num_channels")
    return params
