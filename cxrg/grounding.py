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

import contextlib
import glob
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import InputError
from cxrg.geometry import HALF_MAX, half_max_regions, largest_region, normalise
from cxrg.images import DICOM_SUFFIXES, check_min_side, read_image
from cxrg.registry import HeatmapModel, batched_heatmaps, make_query
from cxrg.runs import atomic_write_bytes, atomic_write_json, save_figure

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *DICOM_SUFFIXES)
BOX_THRESHOLD = HALF_MAX
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
    labels, count = half_max_regions(norm)
    box = None
    if count:
        rows, cols = ndimage.find_objects(labels)[largest_region(labels, count) - 1]
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


CAPTION_FONT = 11
CAPTION_MIN_FONT = 7
COLOUR_BAR_PX = 70


def caption_layout(caption: str, width_px: int) -> tuple[str, int]:
    """(the caption wrapped to fit `width_px`, its font size): smaller type, then more lines, so a caption
    is never cut off on a small image."""
    import textwrap

    char_px = 0.65 * 100 / 72  # an average character is about 0.65 em; points to pixels at 100 dpi
    for size in range(CAPTION_FONT, CAPTION_MIN_FONT - 1, -1):
        if len(caption) * char_px * size <= width_px - 8:
            return caption, size
    per_line = max(8, int((width_px - 8) / (char_px * CAPTION_MIN_FONT)))
    return "\n".join(textwrap.wrap(caption, per_line, break_long_words=True)), CAPTION_MIN_FONT


def draw_overlay(ax: Any, image: np.ndarray, heatmap: np.ndarray, step: int = 1) -> Any:
    """The display-windowed radiograph in grey with the normalised heatmap over it in jet, its opacity
    growing with the value up to 60 % (low values leave the film visible). Returns the colour mappable."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    shown, heat = display_window(image[::step, ::step]), normalise(heatmap)[::step, ::step]
    ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    values = np.nan_to_num(heat, nan=0.0)
    colours = colormaps["jet"](values)
    colours[..., 3] = 0.6 * values  # low values see-through, the finding stands out
    ax.imshow(colours)
    ax.set_axis_off()
    return ScalarMappable(cmap="jet", norm=Normalize(0, 1))


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, caption: str) -> Any:
    """The overlay picture (radiograph, heatmap, colour bar, caption with the scale) as a figure, drawn at
    most OVERLAY_MAX_SIDE px on the long side. A bare Figure, not pyplot's: drawing it never touches the
    notebook's or the terminal's plotting backend."""
    from matplotlib.figure import Figure

    step = max(1, int(np.ceil(max(image.shape) / OVERLAY_MAX_SIDE)))
    height, width = image[::step, ::step].shape
    bar = COLOUR_BAR_PX
    text, size = caption_layout(caption + (f"  [1:{step}]" if step > 1 else ""), width + bar)
    band = int(size * 100 / 72 * 1.3 * (text.count("\n") + 1) + 20)
    fig = Figure(figsize=((width + bar) / 100, (height + band) / 100), dpi=100)
    ax = fig.add_axes((0, 0, width / (width + bar), height / (height + band)))
    mappable = draw_overlay(ax, image, heatmap, step)
    cax = fig.add_axes((width / (width + bar) + 10 / (width + bar), 0.1 * height / (height + band),
                        15 / (width + bar), 0.8 * height / (height + band)))
    fig.colorbar(mappable, cax=cax)
    cax.tick_params(labelsize=8)
    fig.text(0.5, 1 - band / 2 / (height + band), text, ha="center", va="center", fontsize=size,
             linespacing=1.2)
    return fig


def overlay_png(image: np.ndarray, heatmap: np.ndarray, caption: str, out: Path) -> None:
    """Write overlay_figure as a PNG (atomically)."""
    save_figure(overlay_figure(image, heatmap, caption), out, dpi=100)


@dataclass(repr=False)
class Grounding:
    """One phrase grounded on one image: the heatmap and everything `cxrg ground` writes about it.

    `heatmap` is float32 at the image's size, NaN where the model saw no pixel (raw, not normalised);
    `peak` (x, y) and `box` (x, y, w, h of the largest region >= half the normalised maximum) are in
    original pixels; `token_maps` (LDM models) maps each word of the prompt to its own heatmap, computed on
    first use."""

    heatmap: np.ndarray
    image: np.ndarray = field(repr=False)
    phrase: str
    prompt: str
    model: str
    model_version: str
    settings: dict[str, Any] | None = None
    source: str | None = None
    weights_fingerprint: str = ""
    """The model's identity (cxrg.api.Model.fingerprint), written into a DICOM SEG's algorithm record."""
    dicom: Any = field(default=None, repr=False)
    """The pydicom Dataset it was grounded on, when it was given one (the SEG's source)."""
    _token_maps: Callable[[], dict[str, np.ndarray]] | None = field(default=None, repr=False)
    _cached_token_maps: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def peak(self) -> tuple[int, int] | None:
        found = heatmap_summary(self.heatmap)["peak"]
        return (found["x"], found["y"]) if found else None

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        found = heatmap_summary(self.heatmap)["box"]
        return (found["x"], found["y"], found["w"], found["h"]) if found else None

    @property
    def token_maps(self) -> dict[str, np.ndarray] | None:
        """word -> heatmap (LDM models; None for the others): each word's own tokens through the same
        pipeline as the phrase's map."""
        if self._token_maps is None:
            return None
        if self._cached_token_maps is None:
            self._cached_token_maps = self._token_maps()
        return self._cached_token_maps

    def to_dicom_seg(self, path: str | Path, source: Any = None) -> Path:
        """Write the heatmap as a DICOM Segmentation (cxrg.export.dicom_seg; docs/viewer.md) that
        references its DICOM source: `source` (a path or pydicom Dataset), else the Dataset or file it was
        grounded on. `path`: a folder (named <stem>.<model>.seg.dcm) or a .dcm file. The same object as
        `cxrg ground --format dicom-seg`."""
        from cxrg.errors import UsageError
        from cxrg.export.dicom_seg import write_dicom_seg

        chosen = source if source is not None else self.dicom if self.dicom is not None else self.source
        if chosen is None:
            raise UsageError("DICOM SEG needs a DICOM source; this grounding was made from an array",
                             hint="pass source=<the DICOM file or pydicom Dataset the array came from>")
        otsu = bool(((self.settings or {}).get("heatmap") or {}).get("otsu", False))
        return write_dicom_seg(chosen, self.heatmap, None, phrase=self.phrase, prompt=self.prompt,
                               model=self.model, model_version=self.model_version,
                               weights_fingerprint=self.weights_fingerprint, out=Path(path), otsu=otsu)

    def __repr__(self) -> str:
        where = Path(self.source).name if self.source else "an image"
        return (f"<Grounding {self.model}: {self.prompt!r} on {where} ({self.image.shape[1]}x"
                f"{self.image.shape[0]}), peak {self.peak}, box {self.box}>")

    def caption(self) -> str:
        return f"{self.prompt}  ({self.model})"

    def summary(self) -> dict[str, Any]:
        """What the JSON file holds (without `outputs`)."""
        out = {"image": self.source, "model": self.model, "model_version": self.model_version,
               "phrase": self.phrase, "prompt": self.prompt,
               "image_size": {"height": self.image.shape[0], "width": self.image.shape[1]},
               "seen_fraction": float(np.mean(~np.isnan(self.heatmap))), **heatmap_summary(self.heatmap)}
        if self.settings and "heatmap" in self.settings:
            out["model_settings"] = self.settings["heatmap"]
        return out

    def save(self, folder: str | Path, stem: str | None = None) -> dict[str, Any]:
        """Write `cxrg ground`'s three files into `folder`: <stem>.<model>.heatmap.npy, .overlay.png and
        .json (stem: the image file's name up to its first dot, else "image"). Returns the JSON summary."""
        import io

        out_dir = Path(folder)
        stem = stem or (Path(self.source).name.split(".")[0] if self.source else "image")
        name = f"{stem}.{self.model}"
        out_dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, self.heatmap)
        atomic_write_bytes(out_dir / f"{name}.heatmap.npy", buffer.getvalue())
        overlay_png(self.image, self.heatmap, self.caption(), out_dir / f"{name}.overlay.png")
        summary = self.summary()
        summary["outputs"] = {kind: str(out_dir / f"{name}.{kind}")
                              for kind in ("heatmap.npy", "overlay.png", "json")}
        atomic_write_json(out_dir / f"{name}.json", summary)
        return summary

    def plot(self, ax: Any = None) -> Any:
        """Draw the overlay (and the box, dashed) on a matplotlib axes (a new figure without one)."""
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 5 * self.image.shape[0] / self.image.shape[1]))
        draw_overlay(ax, self.image, self.heatmap)
        if self.box is not None:
            x, y, w, h = self.box
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="white", linestyle="--", linewidth=1))
        ax.set_title(self.caption(), fontsize=10)
        return ax

    def _repr_png_(self) -> bytes:
        """The overlay picture, as Jupyter shows a result."""
        import io

        buffer = io.BytesIO()
        overlay_figure(self.image, self.heatmap, self.caption()).savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


def model_settings(model: HeatmapModel) -> dict[str, Any] | None:
    """An LDM model's resolved heatmap settings with its capture window (what the JSON records)."""
    settings = getattr(model, "settings", None)
    if settings is not None and hasattr(settings, "window"):
        return settings.to_dict() | {"window": settings.window()}
    return None


def ground_array(model: HeatmapModel, image: np.ndarray, prompt: str, phrase: str | None = None,
                 source: str | None = None, options: dict[str, Any] | None = None) -> Grounding:
    """Run one model on one image (float32 H x W in [0, 1]) and prompt: the one place `cxrg ground` and
    the Python API get a heatmap, so both give the same bits. Refuses an image too small to ground."""
    check_min_side(image, source or "image")
    heatmap = model.heatmap(make_query(model.card, image, prompt, None, Path(source) if source else None))
    return grounding_of(model, image, heatmap, prompt, phrase, source, options)


def grounding_of(model: HeatmapModel, image: np.ndarray, heatmap: Any, prompt: str, phrase: str | None = None,
                 source: str | None = None, options: dict[str, Any] | None = None) -> Grounding:
    """The Grounding of a heatmap `model` made for `image` (here or in a batch: batch_heatmaps)."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != image.shape:
        raise InputError(f"model returned a {heatmap.shape} heatmap for a {image.shape} image",
                         where=model.card.name)
    settings = dict(options or {})
    ldm = model_settings(model)
    if ldm is not None:
        settings["heatmap"] = ldm
    return Grounding(heatmap, image, prompt if phrase is None else phrase, prompt, model.card.name,
                     model.card.version, settings, source)


def ground_image(model: HeatmapModel, image_path: Path, prompt: str, out_dir: Path,
                 stem: str | None = None, phrase: str | None = None,
                 ready: tuple[np.ndarray, Any] | None = None) -> dict[str, Any]:
    """Run one model on one image file and write the three outputs; returns the JSON summary. `ready`: its
    (image, heatmap) when computed already (batch_heatmaps)."""
    if ready is None:
        grounding = ground_array(model, read_image(image_path), prompt, phrase, str(image_path))
    else:
        grounding = grounding_of(model, *ready, prompt, phrase, str(image_path))
    return grounding.save(out_dir, stem or image_path.name.split(".")[0])


def prompt_for(model: HeatmapModel, phrase: str, exact: bool = False) -> tuple[str, str | None]:
    """(the prompt a model gets for a phrase, a note for the user or None). See the module docstring."""
    from cxrg.phrases import normalise

    if model.card.prompts != "vocabulary":
        return " ".join(phrase.split()), None  # a free-text model gets the phrase as typed, as in bench
    reading = normalise(phrase, exact=exact)
    notes = [f"corrected {typed!r} to {word!r}" for typed, word in reading.corrections]
    if reading.prompt.strip().lower() != " ".join(phrase.split()).lower():
        notes.append(f"read as '{reading.prompt}'")
    return reading.prompt, "; ".join(notes) or None


def batch_heatmaps(model: HeatmapModel, paths: list[Path], prompt: str) -> dict[Path, tuple[np.ndarray, Any]]:
    """(image, heatmap) per path from one `model.heatmaps` call for all of them (the LDM inverts them
    together); {} for a model without it or when the call fails (each image is then grounded alone, so a
    bad one fails alone). An image that cannot be read is left out (grounding it alone reports why)."""
    if len(paths) < 2 or not callable(getattr(model, "heatmaps", None)):
        return {}
    images: dict[Path, np.ndarray] = {}
    for path in paths:
        try:
            images[path] = check_min_side(read_image(path), str(path))
        except Exception:  # grounding it alone reports why
            continue
    maps = batched_heatmaps(model, [make_query(model.card, image, prompt, None, path)
                                    for path, image in images.items()])
    if maps is None:
        return {}
    return {path: (image, heat) for (path, image), heat in zip(images.items(), maps, strict=True)}


def ground_images(model: HeatmapModel, spec: str, phrase: str, out: Path, exact: bool = False,
                  batch_size: int = 1) -> None:
    """Ground `phrase` on every image of `spec` (file, folder, glob): one line per image on stdout; a file
    that cannot be read is reported and skipped, the counts are printed; exit status 1 if any failed.
    `batch_size` images go to the model at once (batch_heatmaps); the outputs do not depend on it beyond
    float rounding."""
    import sys

    from cxrg.errors import CxrgError
    from cxrg.progress import progress

    check_groundable(model)
    paths = collect_images(spec)
    prompt, note = prompt_for(model, phrase, exact)
    if note:
        print(f"cxrg: {phrase!r}: {note}", file=sys.stderr, flush=True)
    stems: dict[str, Path] = {}
    failed = 0
    with progress("ground", total=len(paths), unit="images", enabled=len(paths) > 1) as bar:
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
                    with model_progress(model, len(paths) == 1 and path not in ready):
                        summary = ground_image(model, path, prompt, out, stem, phrase, ready.get(path))
                    peak, files = summary["peak"], summary["outputs"]
                    print(f"{path}: '{prompt}' peak at x={peak['x']}, y={peak['y']} -> {files['overlay.png']}"
                          if peak else f"{path}: the model saw no pixel -> {files['json']}", flush=True)
                except CxrgError as exc:
                    if len(paths) == 1:
                        raise
                    failed += 1
                    print(f"cxrg: skipped {path}: {exc.one_line()}", file=sys.stderr, flush=True)
                bar.advance(1)
    if len(paths) > 1 or failed:
        print(f"{len(paths) - failed} of {len(paths)} images grounded, {failed} skipped", file=sys.stderr,
              flush=True)
    if failed:
        raise SystemExit(1)


def check_groundable(model: HeatmapModel) -> None:
    """A model that needs ground-truth boxes cannot ground a phrase on a new image."""
    from cxrg.errors import UsageError

    if model.card.uses_ground_truth:
        raise UsageError(f"model '{model.card.name}' needs ground-truth boxes",
                         hint="use it with `cxrg bench`")


@contextlib.contextmanager
def model_progress(model: HeatmapModel, enabled: bool = True) -> Iterator[None]:
    """Progress over the LDM's U-Net passes (inversion, then capture), one bar per stage (cxrg.progress);
    nothing for models without an engine."""
    from cxrg.progress import Bar, make_bar

    engine = getattr(model, "engine", None)
    if not enabled or engine is None or not hasattr(engine, "progress"):
        yield
        return
    bars: dict[str, Bar] = {}
    stage_start = [time.monotonic()]  # a stage's clock starts when the one before it ended

    def update(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for other in bars.values():
                other.close()
            bars[stage] = make_bar(stage, total, "passes")
            bars[stage].started = stage_start[0]
        bars[stage].update(done=done, total=total)
        if done >= total:
            stage_start[0] = time.monotonic()

    engine.progress = update
    try:
        yield
    finally:
        engine.progress = None
        for bar in bars.values():
            with contextlib.suppress(Exception):
                bar.close()
