"""How many images `cxrg bench` (and `ground` over a folder) gives a model at once.

The value comes from `--batch-size N|auto`, else `batch_size` in the [bench] table of cxrg.toml (a number,
"auto", or a table per device type: `[bench.batch_size]` with `cpu = 2`, `cuda = "auto"`), else "auto".
"auto" is 1 on a CPU (the one-image path, as before batching existed) and, on a CUDA device, the largest
batch whose U-Net activations fit in 80 % of the free memory, measured with one forward pass at batch 1 and
2 (the difference is what one more image costs), capped at MAX_AUTO. The choice never changes a result
(bit for bit with the LDM's default batch_invariant, to float rounding without it), never enters a row's
fingerprint or the resume rule; it is recorded in config.json.
"""

from __future__ import annotations

from typing import Any

from cxrg.errors import UsageError

AUTO = "auto"
MAX_AUTO = 32
MEMORY_FRACTION = 0.8


def parse_batch_size(value: Any, where: str = "--batch-size") -> int | str:
    """A whole number >= 1 or "auto" (from the command line or a configuration file)."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number < 1 or (isinstance(value, float) and value != number):
        raise UsageError(f"{where} must be a whole number >= 1 or auto, got {value!r}",
                         hint="e.g. --batch-size 4, or [bench] batch_size = \"auto\" in cxrg.toml")
    return number


def configured_batch_size(cfg: Any, cli_value: Any, device: str) -> tuple[int | str, str]:
    """(N or "auto", where it came from): --batch-size, then [bench] batch_size (per device type when a
    table), then "auto"."""
    if cli_value is not None:
        return parse_batch_size(cli_value), "command line"
    value, source = cfg.resolve("bench.batch_size") if cfg is not None else (None, "default")
    if isinstance(value, dict):
        kind = str(device).split(":")[0]
        if kind not in value:
            return AUTO, f"default (no `{kind}` in [bench.batch_size] of {source})"
        return parse_batch_size(value[kind], f"[bench.batch_size] {kind} in {source}"), source
    if value is not None:
        return parse_batch_size(value, f"[bench] batch_size in {source}"), source
    return AUTO, "default"


def choose_batch_size(free_bytes: float, per_image_bytes: float, cap: int = MAX_AUTO) -> int:
    """The largest N with N images' activations within MEMORY_FRACTION of the free memory, 1..cap."""
    if per_image_bytes <= 0:
        return cap
    return max(1, min(cap, int(MEMORY_FRACTION * free_bytes // per_image_bytes)))


def per_image_bytes(engine: Any) -> float:
    """Peak CUDA memory one more image adds to an unconditional U-Net pass of `engine` (LdmEngine): the
    peak at batch 2 minus the peak at batch 1 (weights and allocator overhead cancel)."""
    import torch

    ldm = engine.ldm
    side = engine.size // 8
    channels = int(getattr(ldm.unet, "in_channels", 3))
    peaks = []
    with torch.inference_mode():
        uncond = engine.unconditional()
        for n in (1, 2):
            torch.cuda.synchronize(ldm.device)
            torch.cuda.reset_peak_memory_stats(ldm.device)
            base = torch.cuda.memory_allocated(ldm.device)
            latent = torch.zeros(n, channels, side, side, device=ldm.device, dtype=ldm.dtype)
            ldm.unet(latent, timesteps=engine._t(0, n), context=uncond.expand(n, -1, -1))
            torch.cuda.synchronize(ldm.device)
            peaks.append(torch.cuda.max_memory_allocated(ldm.device) - base)
    return float(max(peaks[1] - peaks[0], 1))


def resolve_batch_size(requested: int | str, models: dict[str, Any], device: str) -> tuple[int, str]:
    """(N, why): a number stays; "auto" is 1 off CUDA or without an LDM, else the memory-aware choice."""
    if requested != AUTO:
        return int(requested), "as set"
    engines = [m.engine for m in models.values() if getattr(m, "engine", None) is not None
               and hasattr(m.engine, "ldm")]
    if not str(device).startswith("cuda") or not engines:
        return 1, "auto: 1 (not a CUDA device)" if engines else "auto: 1 (no model batches images)"
    import torch

    engine = engines[0]
    free, _ = torch.cuda.mem_get_info(engine.ldm.device)
    per_image = max(per_image_bytes(e) for e in engines)
    n = choose_batch_size(free, per_image)
    return n, (f"auto: {n} ({free / 2**30:.1f} GiB free, {per_image / 2**30:.2f} GiB per image, "
               f"{MEMORY_FRACTION:.0%} used, at most {MAX_AUTO})")
