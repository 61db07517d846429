"""Ground a phrase on images: heatmap file, overlay picture and a JSON summary per image.

For a model that takes vocabulary prompts (prior, ldm: `ModelCard.prompts`), the phrase first goes through
`cxrg.phrases.normalise` (the one reading of a phrase everywhere: "small left effusion" -> "left pleural
pleural effusion"); `exact=True` keeps it as typed, and a phrase that cannot be read is refused with the
closest prompts. A free-text model (ldm-frozen) gets the phrase as typed, as in `cxrg bench`.

Outputs per image, in the output folder, named with the model so that two models never overwrite each
other: `<stem>.<model>.heatmap.npy` (float32, the image's size, NaN where the model saw no pixel; raw, not
normalised), `<stem>.<model>.overlay.png` (the radiograph, display-windowed by a 0.5-99.5 percentile
stretch, with the min-max normalised heatmap over it, a colour bar and the prompt as caption; drawn at most
1024 px on the long side, the scale is in the caption), and `<stem>.<model>.json`: model, phrase as given,
prompt used, image size, the peak (x, y) in original pixels, and a box: the bounding box (x, y, w, h) of
the largest connected region where the normalised heatmap is >= 0.5.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import InputError
from cxrg.geometry import normalise
from cxrg.images import DICOM_SUFFIXES, read_image
from cxrg.registry import HeatmapModel, make_query
from cxrg.runs import atomic_write_bytes, atomic_write_json, save_figure

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)
BOX_THRESHOLD = 0.5
OVERLAY_MAX_SIDE = 1024


def collect_images(spec: str) -> list[Path]:
    """A file, a folder (its image files, sorted) or a glob pattern -> image paths."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise InputError("no image files in the folder", where=spec,
                             hint=f"expected files ending in {', '.join(IMAGE_SUFFIXES)}")
        return found
    if glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not found:
            raise InputError("the pattern matches no file", where=spec)
        return found
    raise InputError("image not found", where=spec, hint="give an image file, a folder or a glob pattern")


def heatmap_summary(heatmap: np.ndarray) -> dict[str, Any]:
    """Peak location and the box of the largest region at or above half the normalised maximum."""
    from scipy import ndimage

    norm = normalise(heatmap)
    if np.isnan(norm).all():
        return {"peak": None, "box": None}
    filled = np.nan_to_num(norm, nan=-1.0)
    peak_y, peak_x = np.unravel_index(int(np.argmax(filled)), filled.shape)
    labels, count = ndimage.label(filled >= BOX_THRESHOLD)
    box = None
    if count:
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
        region = ndimage.find_objects(labels)[int(np.argmax(sizes))]
        rows, cols = region
        box = {"x": cols.start, "y": rows.start, "w": cols.stop - cols.start, "h": rows.stop - rows.start,
               "threshold": BOX_THRESHOLD}
    return {"peak": {"x": int(peak_x), "y": int(peak_y)}, "box": box}


def display_window(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """A percentile stretch for looking at a radiograph (a DICOM's own wide window looks washed out); for
    display only: heatmaps and scores use the image as read (docs: the pixel convention)."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros_like(image)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0, 1)


def overlay_png(image: np.ndarray, heatmap: np.ndarray, caption: str, out: Path) -> None:
    """The display-windowed radiograph in grey with the normalised heatmap over it (jet; opacity grows with
    the value, up to 60 %, so the radiograph stays readable), a colour bar and a caption with the scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = max(1, int(np.ceil(max(image.shape) / OVERLAY_MAX_SIDE)))
    shown, heat = display_window(image[::step, ::step]), normalise(heatmap)[::step, ::step]
    height, width = shown.shape
    bar = 70
    fig = plt.figure(figsize=((width + bar) / 100, height / 100 + 0.4), dpi=100)
    ax = fig.add_axes((0, 0, width / (width + bar), height / (height + 40)))
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    colours = plt.get_cmap("jet")(np.nan_to_num(heat, nan=0.0))
    colours[..., 3] = 0.6 * np.nan_to_num(heat, nan=0.0)  # low values see-through, the finding stands out
    ax.imshow(colours)
    ax.set_axis_off()
    cax = fig.add_axes((width / (width + bar) + 10 / (width + bar), 0.1 * height / (height + 40),
                        15 / (width + bar), 0.8 * height / (height + 40)))
    fig.colorbar(plt.cm.ScalarMappable(cmap="jet", norm=plt.Normalize(0, 1)), cax=cax)
    cax.tick_params(labelsize=8)
    scale = f"  [1:{step}]" if step > 1 else ""
    fig.text(0.5, 1 - 20 / (height + 40), caption + scale, ha="center", va="center", fontsize=11)
    save_figure(fig, out, dpi=100)


def ground_image(model: HeatmapModel, image_path: Path, prompt: str, out_dir: Path,
                 stem: str | None = None, phrase: str | None = None) -> dict[str, Any]:
    """Run one model on one image and write the three outputs; returns the JSON summary."""
    image = read_image(image_path)
    heatmap = model.heatmap(make_query(model.card, image, prompt, None, image_path))
    return write_grounding(model, image_path, image, heatmap, prompt, out_dir, stem, phrase)


def write_grounding(model: HeatmapModel, image_path: Path, image: np.ndarray, heatmap: Any, prompt: str,
                    out_dir: Path, stem: str | None = None, phrase: str | None = None) -> dict[str, Any]:
    """The three outputs of one image's heatmap (see the module docstring); returns the JSON summary."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != image.shape:
        raise InputError(f"model returned a {heatmap.shape} heatmap for a {image.shape} image",
                         where=model.card.name)
    name = f"{stem or image_path.name.split('.')[0]}.{model.card.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    import io

    buffer = io.BytesIO()
    np.save(buffer, heatmap)
    atomic_write_bytes(out_dir / f"{name}.heatmap.npy", buffer.getvalue())
    overlay_png(image, heatmap, f"{prompt}  ({model.card.name})", out_dir / f"{name}.overlay.png")
    summary = {"image": str(image_path), "model": model.card.name, "model_version": model.card.version,
               "phrase": prompt if phrase is None else phrase, "prompt": prompt,
               "image_size": {"height": image.shape[0], "width": image.shape[1]},
               "seen_fraction": float(np.mean(~np.isnan(heatmap))), **heatmap_summary(heatmap)}
    settings = getattr(model, "settings", None)
    if settings is not None and hasattr(settings, "window"):
        summary["model_settings"] = settings.to_dict() | {"window": settings.window()}
    summary["outputs"] = {kind: str(out_dir / f"{name}.{kind}")
                          for kind in ("heatmap.npy", "overlay.png", "json")}
    atomic_write_json(out_dir / f"{name}.json", summary)
    return summary


def prompt_for(model: HeatmapModel, phrase: str, exact: bool = False) -> tuple[str, str | None]:
    """(the prompt a model gets for a phrase, a note for the user or None). See the module docstring."""
    from cxrg.phrases import normalise

    if model.card.prompts != "vocabulary":
        return " ".join(phrase.split()), None  # a free-text model gets the phrase as typed, as in bench
    reading = normalise(phrase, exact=exact)
    if reading.prompt.strip().lower() != " ".join(phrase.split()).lower():
        return reading.prompt, f"read as '{reading.prompt}'"
    return reading.prompt, None


def batch_heatmaps(model: HeatmapModel, paths: list[Path], prompt: str) -> dict[Path, tuple[np.ndarray, Any]]:
    """(image, heatmap) per path from one `model.heatmaps` call for all of them (the LDM inverts them
    together); {} for a model without it or when the call fails (each image is then grounded alone, so a
    bad one fails alone). An image that cannot be read is left out (grounding it alone reports why)."""
    from cxrg.runs import is_contained

    batched = getattr(model, "heatmaps", None)
    if len(paths) < 2 or not callable(batched):
        return {}
    images: dict[Path, np.ndarray] = {}
    for path in paths:
        try:
            images[path] = read_image(path)
        except Exception:
            continue
    try:
        maps = list(batched([make_query(model.card, image, prompt, None, path)
                             for path, image in images.items()]))
    except BaseException as exc:
        if not is_contained(exc):
            raise
        return {}
    if len(maps) != len(images):
        return {}
    return {path: (image, heat) for (path, image), heat in zip(images.items(), maps, strict=True)}


def ground_images(model: HeatmapModel, spec: str, phrase: str, out: Path, exact: bool = False,
                  batch_size: int = 1) -> None:
    """Ground `phrase` on every image of `spec` (file, folder, glob): one line per image on stdout; a file
    that cannot be read is reported and skipped, the counts are printed; exit status 1 if any failed.
    `batch_size` images go to the model at once (batch_heatmaps); the outputs do not depend on it beyond
    float rounding."""
    import sys

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from cxrg.errors import CxrgError, UsageError

    if model.card.uses_ground_truth:
        raise UsageError(f"model '{model.card.name}' needs ground-truth boxes",
                         hint="use it with `cxrg bench`")
    paths = collect_images(spec)
    prompt, note = prompt_for(model, phrase, exact)
    if note:
        print(f"cxrg: {phrase!r}: {note}", file=sys.stderr, flush=True)
    err = Console(stderr=True)
    stems: dict[str, Path] = {}
    failed = 0
    with Progress(TextColumn("ground"), BarColumn(), MofNCompleteColumn(), console=err, transient=True,
                  disable=len(paths) == 1 or not err.is_terminal) as bar:
        task = bar.add_task("images", total=len(paths))
        for start in range(0, len(paths), max(1, batch_size)):
            chunk = paths[start:start + max(1, batch_size)]
            ready = batch_heatmaps(model, [p for p in chunk if p.name.split(".")[0] not in stems], prompt)
            for path in chunk:
                stem = path.name.split(".")[0]
                try:
                    if stem in stems:
                        raise CxrgError(f"output name '{stem}' is already used by {stems[stem]}",
                                        where=str(path),
                                        hint="ground these images into separate --out folders")
                    stems[stem] = path
                    if path in ready:
                        image, heat = ready[path]
                        summary = write_grounding(model, path, image, heat, prompt, out, stem, phrase)
                    else:
                        with model_progress(model, err, len(paths) == 1):
                            summary = ground_image(model, path, prompt, out, stem, phrase)
                    peak, files = summary["peak"], summary["outputs"]
                    print(f"{path}: '{prompt}' peak at x={peak['x']}, y={peak['y']} -> {files['overlay.png']}"
                          if peak else f"{path}: the model saw no pixel -> {files['json']}", flush=True)
                except CxrgError as exc:
                    if len(paths) == 1:
                        raise
                    failed += 1
                    print(f"cxrg: skipped {path}: {exc.one_line()}", file=sys.stderr, flush=True)
                bar.advance(task)
    if len(paths) > 1 or failed:
        print(f"{len(paths) - failed} of {len(paths)} images grounded, {failed} skipped", file=sys.stderr,
              flush=True)
    if failed:
        raise SystemExit(1)


def model_progress(model: HeatmapModel, console: Any, enabled: bool):
    """A progress bar over the LDM's U-Net passes (inversion, then capture) on a terminal; quiet when piped
    or for models without an engine."""
    import contextlib

    engine = getattr(model, "engine", None)
    if not enabled or engine is None or not console.is_terminal or not hasattr(engine, "progress"):
        return contextlib.nullcontext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    @contextlib.contextmanager
    def shown():
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as bar:
            tasks: dict[str, Any] = {}

            def update(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            engine.progress = update
            try:
                yield
            finally:
                engine.progress = None

    return shown()
