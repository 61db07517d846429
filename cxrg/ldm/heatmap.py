"""Phrase heatmaps from the LDM's cross-attention (Vilouras et al. 2024, with the paper's settings).

Pipeline for one image and prompt (every number in HeatmapSettings):
 1. resize the image's shortest side to the model size (512) and centre-crop; encode with the autoencoder
    (the posterior mean, times the latent scale 0.3);
 2. DDIM-invert the latent along the unconditional ("") trajectory (ddim.py);
 3. at the captured steps (indices 30..59 of 100, counted noise -> image by default: t = 690..400; see
    HeatmapSettings.capture_order), run the U-Net on that step's latent with the prompt and record
    softmax(QK^T/sqrt(d)) in the captured layers; average the prompt's own tokens (not begin, end,
    padding) and the heads; layers of different resolutions are resized (bilinear) to the largest one;
 4. min-max normalise each (layer, step) map, upsample it bilinearly to the model size, average them all;
    Gaussian filter (sigma 2.5 px at 512, scaled with the model size), min-max normalise; keep the pixels
    above the Otsu threshold (frozen model);
 5. map back to the original image: the crop's inverse, NaN outside the crop (images.ResizeCenterCrop).

Two implementations give the same maps (tests hold them equal):
- `reference_maps`: the straightforward way: all inference steps, the unconditional and conditional
  prompt batched at every step, the full U-Net with explicit attention everywhere, every cross-attention
  layer captured and the wanted ones selected afterwards; one prompt at a time.
- `LdmEngine.maps` (fast): inversion only up to the last captured step with unconditional passes only (the
  trajectory does not depend on the prompt, so an image is inverted once for all its prompts and cached),
  then the conditional passes of all captured steps and prompts batched together, the U-Net stopped after
  the last captured layer, explicit softmax only in captured layers, torch.inference_mode.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from cxrg.errors import InputError
from cxrg.geometry import ResizeCenterCrop
from cxrg.ldm.attention import attention_path, capture, cross_attention_layers, run_until_captured
from cxrg.ldm.config import HeatmapSettings
from cxrg.ldm.ddim import inversion_timesteps, invert_step
from cxrg.ldm.invariant import batch_invariant
from cxrg.ldm.loading import LoadedLdm
from cxrg.ldm.text import Codebook, TokenSpan, encode, tokenize

REFERENCE_SIZE = 512


# ------------------------------------------------------------------------------------ post-processing


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold over a 256-bin histogram (scikit-image's threshold_otsu definition)."""
    values = values[np.isfinite(values)].ravel()
    if values.size == 0 or values.min() == values.max():
        return float(values.min()) if values.size else 0.0
    counts, edges = np.histogram(values, bins=bins, range=(float(values.min()), float(values.max())))
    centres = (edges[:-1] + edges[1:]) / 2
    counts = counts.astype(np.float64)
    weight_low = np.cumsum(counts)
    weight_high = np.cumsum(counts[::-1])[::-1]
    mean_low = np.cumsum(counts * centres) / np.maximum(weight_low, 1e-300)
    mean_high = (np.cumsum((counts * centres)[::-1]) / np.maximum(weight_high[::-1], 1e-300))[::-1]
    between = weight_low[:-1] * weight_high[1:] * (mean_low[:-1] - mean_high[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def _minmax(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    low = x.amin(dim=dims, keepdim=True)
    span = x.amax(dim=dims, keepdim=True) - low
    return torch.where(span > 0, (x - low) / torch.where(span > 0, span, 1), torch.zeros_like(x))


def postprocess(maps: torch.Tensor, size: int, settings: HeatmapSettings) -> np.ndarray:
    """(layers*steps, h, w) token-averaged attention -> size x size heatmap in [0, 1]."""
    from scipy import ndimage

    maps = _minmax(maps.to(torch.float32), (-2, -1))
    upsampled = torch.nn.functional.interpolate(maps[:, None], size=(size, size), mode="bilinear",
                                                align_corners=False)[:, 0]
    mean = upsampled.mean(dim=0).cpu().numpy().astype(np.float64)
    sigma = settings.smoothing_sigma * size / REFERENCE_SIZE
    smooth = ndimage.gaussian_filter(mean, sigma=sigma) if sigma > 0 else mean
    low, high = smooth.min(), smooth.max()
    heat = (smooth - low) / (high - low) if high > low else np.zeros_like(smooth)
    if settings.otsu:
        heat = heat * (heat > otsu_threshold(heat))
    return heat.astype(np.float32)


def common_side(layer_maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """(..., h, w) maps of layers of different resolutions -> all at the largest side (bilinear), as the
    predecessor brings every map to one size before averaging."""
    side = max(int(m.shape[-1]) for m in layer_maps)
    out = []
    for m in layer_maps:
        if m.shape[-1] != side:
            lead = m.shape[:-2]
            flat = m.reshape(-1, 1, *m.shape[-2:]).float()
            m = torch.nn.functional.interpolate(flat, size=(side, side), mode="bilinear",
                                                align_corners=False).reshape(*lead, side, side)
        out.append(m)
    return out


def token_average(probs: torch.Tensor, spans: Sequence[TokenSpan]) -> torch.Tensor:
    """(B, heads, positions, tokens) -> (B, side, side): mean over heads and each prompt's non-special
    tokens (its span without the binding token "and", as A_sp of the tuning losses)."""
    out = []
    for b, span in enumerate(spans):
        out.append(probs[b, :, :, span.positions()].float().mean(dim=(0, 2)))
    maps = torch.stack(out)
    side = int(round(maps.shape[-1] ** 0.5))
    return maps.reshape(len(spans), side, side)


# ------------------------------------------------------------------------------------ the engine


class LdmEngine:
    """Heatmaps for images and prompts with one loaded LDM (fast path; `reference_maps` is the slow one)."""

    def __init__(self, ldm: LoadedLdm, settings: HeatmapSettings | None = None,
                 codebook: Codebook | None = None, batch_size: int = 10, attention: str = "sdpa",
                 batch_invariant: bool = True) -> None:
        self.ldm = ldm
        self.settings = settings or HeatmapSettings()
        self.codebook = codebook
        self.batch_size = batch_size
        self.attention = attention
        """"sdpa" (default): attention nothing captures runs on torch's fused path; "explicit": MONAI's
        softmax everywhere (attention.attention_path). Captured layers are explicit either way."""
        self.batch_invariant = batch_invariant
        """True (default): an image's heatmap has the same bits whichever images share its batch
        (cxrg.ldm.invariant: convolutions, group norms and the timestep embedding run per image); False:
        those run batched too, faster, equal to float rounding only. Gradient passes (tuning) never are."""
        self.size = int(ldm.architecture.image_size)
        self.transform = ResizeCenterCrop(self.size)
        self.timesteps = inversion_timesteps(self.settings.inference_steps,
                                             ldm.architecture.scheduler["num_train_timesteps"],
                                             self.settings.timestep_spacing)
        self.ratio = ldm.architecture.scheduler["num_train_timesteps"] // self.settings.inference_steps
        bad = [s for s in self.settings.capture_steps if not 0 <= s < self.settings.inference_steps]
        if bad or not self.settings.capture_steps:
            last = self.settings.inference_steps - 1
            raise InputError(f"capture steps {bad or '(none)'} are outside 0..{last}")
        self._trajectories: dict[str, dict[int, torch.Tensor]] = {}
        self._capacity = 1
        """Trajectories of the most recent images (keyed by content), as many as the largest call had: the
        prompts of an image asked in a later call (another model's, another strategy's) reuse them."""
        self.progress: Callable[[str, int, int], None] | None = None
        """Called as progress(stage, done, total) for the inversion and capture passes (a progress bar)."""

    # -- inputs -----------------------------------------------------------------------------------------
    def model_input(self, image: np.ndarray) -> torch.Tensor:
        """(1, 1, size, size) image in [0, 1] on the model's device and dtype."""
        cropped = self.transform(np.asarray(image, dtype=np.float32))
        return torch.tensor(cropped)[None, None].to(self.ldm.device, self.ldm.dtype)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        with attention_path(self.ldm.autoencoder, self.attention), \
                batch_invariant(self.ldm.autoencoder, self.batch_invariant):
            z_mu, _ = self.ldm.autoencoder.encode(pixels)
        return z_mu * self.ldm.architecture.latent_scale

    def contexts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, list[TokenSpan]]:
        ids, spans = tokenize(self.ldm.tokenizer, prompts)
        for prompt, span in zip(prompts, spans, strict=True):
            if span.stop <= span.start:
                raise InputError(f"prompt {prompt!r} has no tokens")
        return encode(self.ldm.text_encoder, ids, self.codebook).to(self.ldm.dtype), spans

    def unconditional(self) -> torch.Tensor:
        ids, _ = tokenize(self.ldm.tokenizer, [""])
        return encode(self.ldm.text_encoder, ids).to(self.ldm.dtype)

    def _step(self, latent: torch.Tensor, output: torch.Tensor, i: int) -> torch.Tensor:
        t = self.timesteps[i]
        return invert_step(latent, output, t - self.ratio, t, self.ldm.alphas,
                           self.ldm.architecture.scheduler["prediction_type"])

    def _t(self, i: int, n: int) -> torch.Tensor:
        return torch.full((n,), self.timesteps[i], dtype=torch.long, device=self.ldm.device)

    # -- fast path --------------------------------------------------------------------------------------
    def trajectory_key(self, pixels: torch.Tensor) -> str:
        key = hashlib.sha1(pixels.float().cpu().numpy().tobytes()).hexdigest()
        return key + repr((self.settings.inference_steps, self.settings.timestep_spacing,
                           tuple(self.settings.inversion_steps)))

    def forget(self) -> None:
        """Drop the cached trajectories (a benchmark's warm-up, or to free memory)."""
        self._trajectories = {}
        self._capacity = 1

    def trajectory(self, pixels: torch.Tensor) -> dict[int, torch.Tensor]:
        """Latents entering each captured step, from unconditional inversion; cached for the last image."""
        return self.trajectories([pixels])[0]

    def trajectories(self, pixels: Sequence[torch.Tensor]) -> list[dict[int, torch.Tensor]]:
        """`trajectory` of several (1, 1, size, size) images, the ones not cached inverted together: one
        U-Net call per step at batch N images. Every operation acts on each image alone, so an image's
        trajectory does not depend on its batch: bit for bit with `batch_invariant`, else to float rounding
        (tests/test_batching.py)."""
        keys = [self.trajectory_key(p) for p in pixels]
        missing = [k for k in dict.fromkeys(keys) if k not in self._trajectories]
        if missing:
            first = {k: keys.index(k) for k in missing}
            batch = torch.cat([pixels[first[k]] for k in missing])
            for k, kept in zip(missing, self._invert(batch), strict=True):
                self._trajectories[k] = kept
        got = [self._trajectories[k] for k in keys]
        for k in keys:  # most recently used last; the cache holds as many images as the largest call
            self._trajectories[k] = self._trajectories.pop(k)
        self._capacity = max(self._capacity, len(set(keys)))
        while len(self._trajectories) > self._capacity:
            self._trajectories.pop(next(iter(self._trajectories)))
        return got

    def _invert(self, pixels: torch.Tensor) -> list[dict[int, torch.Tensor]]:
        wanted = set(self.settings.inversion_steps)
        n = pixels.shape[0]
        uncond = self.unconditional().expand(n, -1, -1)
        latent = self.encode_image(pixels).float()  # the trajectory is kept in float32 whatever the dtype
        kept: dict[int, torch.Tensor] = {}
        invariant = batch_invariant(self.ldm.unet, self.batch_invariant)
        with attention_path(self.ldm.unet, self.attention), invariant:
            for i in range(max(wanted) + 1):
                if i in wanted:
                    kept[i] = latent
                if i == max(wanted):
                    break
                output = self.ldm.unet(latent.to(self.ldm.dtype), timesteps=self._t(i, n), context=uncond)
                latent = self._step(latent, output.float(), i)
                if self.progress is not None:
                    self.progress("inversion", i + 1, max(wanted))
        return [{i: z[b:b + 1] for i, z in kept.items()} for b in range(n)]

    def captured_maps(self, trajectory: dict[int, torch.Tensor] | Sequence[dict[int, torch.Tensor]],
                      context: torch.Tensor, spans: Sequence[TokenSpan], keep_grad: bool = False,
                      owners: Sequence[int] | None = None) -> torch.Tensor:
        """(prompts, layers*steps, h, w) token-averaged attention of the conditional passes, batched
        `batch_size` (prompt, step) passes per U-Net call. With several trajectories (several images),
        `owners[p]` says which one prompt p belongs to; the calls then mix the images' passes."""
        trajectories = [trajectory] if isinstance(trajectory, dict) else list(trajectory)
        owners = list(owners) if owners is not None else [0] * len(spans)
        steps = list(self.settings.inversion_steps)
        jobs = [(p, i) for p in range(len(spans)) for i in steps]
        per_job: list[torch.Tensor] = []
        invariant = self.batch_invariant and not keep_grad
        with attention_path(self.ldm.unet, self.attention), batch_invariant(self.ldm.unet, invariant):
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start:start + self.batch_size]
                latents = torch.cat([trajectories[owners[p]][i] for p, i in chunk]).to(self.ldm.dtype)
                ctx = context[[p for p, _ in chunk]]
                times = torch.tensor([self.timesteps[i] for _, i in chunk], dtype=torch.long,
                                     device=self.ldm.device)
                with capture(self.ldm.unet, self.settings.layers, keep_grad=keep_grad,
                             stop_after_last=True) as got:
                    run_until_captured(self.ldm.unet, latents, timesteps=times, context=ctx)
                chunk_spans = [spans[p] for p, _ in chunk]
                if self.progress is not None:
                    self.progress("attention", start + len(chunk), len(jobs))
                layer_maps = [token_average(got.stacked(layer), chunk_spans)
                              for layer in self.settings.layers]
                per_job.append(torch.stack(common_side(layer_maps), dim=1))  # (chunk, layers, h, w)
        stacked = torch.cat(per_job)  # (prompts*steps, layers, h, w)
        h, w = stacked.shape[-2:]
        return stacked.reshape(len(spans), len(steps) * len(self.settings.layers), h, w)

    def maps(self, image: np.ndarray, prompts: Sequence[str]) -> list[np.ndarray]:
        """Model-space (size x size) heatmaps of `prompts` on one image: the fast path."""
        return self.maps_batch([image], [prompts])[0]

    def maps_batch(self, images: Sequence[np.ndarray], prompts: Sequence[Sequence[str]]
                   ) -> list[list[np.ndarray]]:
        """`maps` of several images at once (prompts[k] are image k's): the unconditional inversion at
        batch N images, the conditional passes of all sum(prompts) x steps batched together. Each map
        equals the one-image call's, whatever N and the order: bit for bit with `batch_invariant`, else to
        float rounding (tests/test_batching.py)."""
        if len(images) != len(prompts):
            raise InputError(f"{len(images)} images but {len(prompts)} prompt lists")
        flat = [p for group in prompts for p in group]
        owners = [k for k, group in enumerate(prompts) for _ in group]
        with torch.inference_mode():
            pixels = [self.model_input(image) for image in images]
            if not flat:
                return [[] for _ in images]
            context, spans = self.contexts(flat)
            trajectories = self.trajectories(pixels)
            attention = self.captured_maps(trajectories, context, spans, owners=owners)
        out: list[list[np.ndarray]] = [[] for _ in images]
        for p, k in enumerate(owners):
            out[k].append(postprocess(attention[p], self.size, self.settings))
        return out

    def heatmaps(self, image: np.ndarray, prompts: Sequence[str]) -> list[np.ndarray]:
        """Heatmaps at the original image's size, NaN outside the model's crop."""
        return self.heatmaps_batch([image], [prompts])[0]

    def heatmaps_batch(self, images: Sequence[np.ndarray], prompts: Sequence[Sequence[str]]
                       ) -> list[list[np.ndarray]]:
        """`heatmaps` of several images at once (see maps_batch)."""
        maps = self.maps_batch(images, prompts)
        mode = self.settings.upsampling
        return [[self.transform.heatmap_to_image(m, image.shape[0], image.shape[1], mode) for m in group]
                for image, group in zip(images, maps, strict=True)]


# ------------------------------------------------------------------------------------ reference path


def reference_maps(engine: LdmEngine, image: np.ndarray, prompts: Sequence[str]) -> list[np.ndarray]:
    """The straightforward way, prompt by prompt (see the module docstring); for tests and benchmarks.
    Explicit attention everywhere, whatever the engine's `attention` setting."""
    unet = engine.ldm.unet
    all_layers = cross_attention_layers(unet)
    results = []
    explicit = (attention_path(unet, "explicit"), attention_path(engine.ldm.autoencoder, "explicit"))
    with torch.no_grad(), explicit[0], explicit[1]:
        pixels = engine.model_input(image)
        uncond = engine.unconditional()
        for prompt in prompts:
            context, spans = engine.contexts([prompt])
            z_mu, _ = engine.ldm.autoencoder.encode(pixels)
            latent = (z_mu * engine.ldm.architecture.latent_scale).float()
            both = torch.cat([uncond, context])
            with capture(unet, all_layers) as got:
                for i in range(engine.settings.inference_steps):
                    model_input = latent.to(engine.ldm.dtype)
                    output = unet(torch.cat([model_input, model_input]), timesteps=engine._t(i, 2),
                                  context=both)
                    latent = engine._step(latent, output[:1].float(), i)
            selected = []
            for layer in engine.settings.layers:
                per_step = got.maps[layer]  # one (2, heads, positions, tokens) tensor per step
                for i in engine.settings.inversion_steps:
                    selected.append(token_average(per_step[i][1:], spans)[0])
            results.append(postprocess(torch.stack(common_side(selected)), engine.size, engine.settings))
    return results
