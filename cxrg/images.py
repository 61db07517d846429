"""Reading chest X-rays into one convention (the geometry lives in cxrg.geometry).

Image convention: float32 H x W in [0, 1] at the file's own resolution, grey, air dark (MONOCHROME2 look).
PNG/JPEG keep the file's real scale (8-bit / 255, 16-bit / 65535), never a min-max stretch, so intensities
mean the same across files of one kind. DICOM goes through the Modality LUT (rescale slope/intercept) and
the file's VOI LUT or window; MONOCHROME1 is inverted.

Coordinate convention: coordinates are pixel *edges*. Pixel i covers [i, i + 1), so its centre is i + 0.5,
and a box x0, y0, x1, y1 = 0, 0, W, H covers the whole image. Boxes are x, y, w, h in files (MS-CXR) and
x0, y0, x1, y1 in code (`to_xyxy`, `to_xywh`). The model transform maps edges linearly:
x_model = x * scale_x - left, which is exact for any point, so boxes and heatmaps map back without drift.

torch is never imported here: resizing uses Pillow's antialiased bilinear filter, which is what
torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False) reproduces
(equal to about 2e-7 on [0, 1] data; the tests check it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from cxrg.errors import CxrgError, InputError
from cxrg.geometry import CropGeometry, ResizeCenterCrop, to_xywh, to_xyxy  # noqa: E402,F401  (importable here)

__all__ = ["DICOM_DISPLAYS", "CropGeometry", "ResizeCenterCrop", "as_image", "check_min_side",
           "dicom_display", "image_size", "mimic_jpg", "read_annotated_image", "read_image", "resolve_image",
           "to_xywh", "to_xyxy"]

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image read (width x height), checked from the header before decoding; a chest radiograph is
about 3,000 x 3,000 = 9 megapixels. $CXRG_MAX_IMAGE_PIXELS changes it."""
DEFAULT_MAX_ASPECT = 8.0
"""Largest ratio of the longer to the shorter side ($CXRG_MAX_IMAGE_ASPECT): a 1 x 50,000 strip would need
tens of GB once its short side is resized to the model's 512."""


DICOM_DISPLAYS = ("window", "mimic-jpg")
_dicom_display = "window"


@contextlib.contextmanager
def dicom_display(mode: str) -> Iterator[None]:
    """Within the block, DICOM files are read with `mode` (the protocol choice dicom_display):

    - "window": the file's VOI LUT or window (else the header's range), MONOCHROME1 inverted (cxrg);
    - "mimic-jpg": MIMIC-CXR-JPG's published conversion (`mimic_jpg`), the grey scale the LDM and the
      baselines were trained on (the paper protocol).
    PNG/JPEG files are read the same either way. A setting of the process (not of a thread)."""
    global _dicom_display
    if mode not in DICOM_DISPLAYS:
        raise InputError(f"unknown DICOM display {mode!r}", hint=f"choose {' or '.join(DICOM_DISPLAYS)}")
    before, _dicom_display = _dicom_display, mode
    try:
        yield
    finally:
        _dicom_display = before


def mimic_jpg(values: np.ndarray, monochrome1: bool) -> np.ndarray:
    """MIMIC-CXR-JPG's conversion of a DICOM's pixel values (Johnson et al. 2019, arXiv:1901.07042):
    min-max scaled to 8 bits (v - min) / (max - min) * 255, truncated to an integer; MONOCHROME1 inverted
    (255 - v); histogram-equalised as OpenCV's equalizeHist does (lut[i] = round(255 * (cdf[i] - cdf[i0]) /
    (N - cdf[i0])), i0 the darkest grey present); returned / 255. The JPEG compression (quality 95) that
    followed is not reproduced (lossy; it moves a grey by a few levels)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    if hi > lo:
        eight = np.floor((v - lo) / (hi - lo) * 255.0).astype(np.uint8)
    else:
        eight = np.zeros(v.shape, dtype=np.uint8)
    if monochrome1:
        eight = np.uint8(255) - eight
    hist = np.bincount(eight.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == eight.size:
        return np.full(v.shape, first / 255.0, dtype=np.float32)
    scale = np.float32(255.0 / (eight.size - hist[first]))
    cdf = np.cumsum(hist) - hist[first]  # pixels above the darkest grey, up to and including each grey
    lut = np.rint(cdf.astype(np.float32) * scale).clip(0, 255)
    lut[:first + 1] = 0
    return (lut[eight] / np.float32(255)).astype(np.float32)


def image_limits() -> tuple[int, float]:
    """(max pixels, max aspect ratio) in force."""
    from cxrg.config import env_number

    return (int(env_number("CXRG_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS)),
            env_number("CXRG_MAX_IMAGE_ASPECT", DEFAULT_MAX_ASPECT))


def check_image_size(height: int, width: int, where: str) -> None:
    """Refuse, before any pixel is decoded, an image over the pixel budget or with an extreme aspect."""
    max_pixels, max_aspect = image_limits()
    if height * width > max_pixels:
        raise InputError(f"image is {width}x{height} = {height * width / 1e6:.1f} megapixels, over the limit "
                         f"of {max_pixels / 1e6:g}", where=where,
                         hint="downscale it, or raise $CXRG_MAX_IMAGE_PIXELS if you have the memory")
    if min(height, width) > 0 and max(height, width) / min(height, width) > max_aspect:
        raise InputError(f"image is {width}x{height}: aspect ratio over {max_aspect:g}:1, not a radiograph",
                         where=where, hint="check the file, or raise $CXRG_MAX_IMAGE_ASPECT")


def _one_line_warnings(caught: list, where: str) -> None:
    """Library warnings (Pillow, pydicom) as cxrg's one-line messages on stderr."""
    import sys

    for item in caught:
        text = " ".join(str(item.message).split())
        print(f"cxrg: warning: {where}: {text}", file=sys.stderr)

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, the weights Pillow's convert("L") uses

# Which pip packages let pydicom decode a compressed transfer syntax (by UID prefix).
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.5": "pylibjpeg pylibjpeg-libjpeg",  # JPEG baseline / extended
    "1.2.840.10008.1.2.4.7": "pylibjpeg pylibjpeg-libjpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.8": "pylibjpeg pylibjpeg-libjpeg",  # JPEG-LS
    "1.2.840.10008.1.2.4.9": "pylibjpeg pylibjpeg-openjpeg",  # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pylibjpeg pylibjpeg-openjpeg",  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",  # RLE
}


# --------------------------------------------------------------------------------------------- reading


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header only (no pixel decoding): for datasets that must
    map boxes to the model frame before any image is read."""
    p = Path(path)
    if not p.is_file():
        raise InputError("image file not found", where=str(p), hint="check the path")
    try:
        with p.open("rb") as f:
            head = f.read(132)
        if head[128:132] == b"DICM" or p.suffix.lower() in DICOM_SUFFIXES:
            import pydicom

            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
            return int(ds.Rows), int(ds.Columns)
        with Image.open(p) as im:
            return im.height, im.width
    except (OSError, AttributeError, ValueError, UnidentifiedImageError) as exc:
        raise InputError(f"cannot read the image size: {exc}", where=str(p)) from exc


MIN_SIDE = 32
"""Smallest side of an image to ground, in pixels: no radiograph is smaller, and the models' resize to 512
would magnify it more than 16 times (a 1 x 1 or 2 x 3 file is a mistake, not an image to ground). Decoding
alone (read_image) takes any size."""


def check_min_side(image: np.ndarray, where: str) -> np.ndarray:
    """`image` unchanged, or an InputError when it is under MIN_SIDE pixels on a side (not a radiograph)."""
    if min(image.shape) < MIN_SIDE:
        height, width = image.shape
        raise InputError(f"image is {width}x{height}: under {MIN_SIDE} pixels on a side, not a radiograph",
                         where=where, hint="check the file")
    return image


def read_annotated_image(path: str | Path, size: tuple[int, int] | None) -> np.ndarray:
    """read_image for grounding: refuses an image under MIN_SIDE pixels on a side, and a file whose
    (height, width) differs from the size its annotations state (the boxes would not line up with it)."""
    image = check_min_side(read_image(path), str(path))
    if size is not None and image.shape != size:
        h, w = size
        raise InputError(f"image is {image.shape[1]}x{image.shape[0]} but the annotations say {w}x{h}",
                         where=str(path), hint="the boxes would not line up; check the file")
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG (or anything Pillow opens) or DICOM file as float32 H x W in [0, 1].

    A file is DICOM when it carries the 'DICM' preamble (whatever its name) or ends in .dcm/.dicom/.dic.
    Every problem with the file is an InputError naming the file.
    """
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise InputError("image file not found", where=where, hint="check the path")
    if p.is_dir():
        raise InputError("expected an image file, got a directory", where=where)
    if not p.is_file():  # a FIFO, socket or device would block or never end
        raise InputError("not a regular file (a pipe, socket or device)", where=where,
                         hint="point at the image file itself")
    try:
        with p.open("rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise InputError(f"cannot open image file: {exc.strerror or exc}", where=where) from exc
    if not head:
        raise InputError("image file is empty (0 bytes)", where=where)

    has_preamble = head[128:132] == b"DICM"
    if has_preamble or p.suffix.lower() in DICOM_SUFFIXES:
        image = _read_dicom(p, force=not has_preamble)
    else:
        image = _read_pil(p)

    if image.ndim != 2 or image.size == 0:
        raise InputError(f"image has no pixels (shape {image.shape})", where=where)
    np.clip(image, 0.0, 1.0, out=image)
    return np.ascontiguousarray(image, dtype=np.float32)


def as_image(image: Any) -> tuple[np.ndarray, str | None]:
    """(float32 H x W in [0, 1], the file it came from or None) from what a notebook holds: a path (str or
    Path: read_image), a numpy array (H x W, any numeric dtype: integers on their type's full range as a
    PNG's 8 or 16 bits are, floats and booleans on [0, 1], widened to the data where they exceed it, never
    a min-max stretch), a PIL image (as read_image reads one from a file) or a pydicom Dataset (as a file)."""
    if isinstance(image, str | Path):
        return read_image(image), str(image)
    where = f"the {type(image).__name__} given"
    if _is_dicom_dataset(image):
        if "file_meta" not in image.__dict__:  # built in memory: give a copy the meta its decoding reads
            import copy

            from pydicom.dataset import FileMetaDataset

            image = copy.copy(image)
            image.file_meta = FileMetaDataset()
        check_image_size(_int(image.get("Rows"), 0), _int(image.get("Columns"), 0), where)
        grey = dicom_pixels(image, where)
    elif isinstance(image, Image.Image):
        check_image_size(image.height, image.width, where)
        grey = _pil_to_grey(image)
    elif isinstance(image, np.ndarray):
        grey = _array_to_grey(image, where)
    else:
        raise InputError(f"cannot read an image from a {type(image).__name__}",
                         hint="give a file path, a numpy array (H x W), a PIL image or a pydicom Dataset")
    if grey.ndim != 2 or grey.size == 0:
        raise InputError(f"image has no pixels (shape {grey.shape})", where=where)
    np.clip(grey, 0.0, 1.0, out=grey)
    return np.ascontiguousarray(grey, dtype=np.float32), None


def _is_dicom_dataset(obj: Any) -> bool:
    if not type(obj).__module__.startswith("pydicom"):  # pydicom is imported only for its own objects
        return False
    from pydicom.dataset import Dataset

    return isinstance(obj, Dataset)


def _array_to_grey(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise InputError(f"array of shape {array.shape} is colour; expected one grey channel (H x W)",
                         where=where, hint="convert it, e.g. array.mean(axis=-1), or pass a PIL image")
    if array.ndim != 2:
        raise InputError(f"array of shape {array.shape}; expected H x W", where=where,
                         hint="squeeze the channel axes, e.g. array[0] or array.squeeze()")
    check_image_size(array.shape[0], array.shape[1], where)
    if array.dtype == bool:
        return _scale(array, 0, 1)
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return _scale(array, float(info.min) if info.min < 0 else 0.0, float(info.max))
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"array of dtype {array.dtype}; expected numbers", where=where)
    if not np.isfinite(array).all():
        raise InputError("array has NaN or infinite pixels", where=where,
                         hint="fill them first, e.g. np.nan_to_num(array)")
    return _scale(array, 0.0, 1.0)


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map the nominal range [lo, hi] to [0, 1] as float32, widened to the data where they exceed it."""
    out = values.astype(np.float32)  # one copy; everything after is in place
    if out.size:
        lo, hi = min(lo, float(out.min())), max(hi, float(out.max()))
    if hi <= lo:
        return np.zeros_like(out)
    out -= np.float32(lo)
    out /= np.float32(hi - lo)
    return out


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """H x W x C colour -> H x W float32 luminance (first three channels; alpha ignored)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    r *= np.float32(_LUMA[0])
    r += g * np.float32(_LUMA[1])
    r += b * np.float32(_LUMA[2])
    return r


def _read_pil(path: Path) -> np.ndarray:
    import warnings

    where = str(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = _read_pil_image(path, where)
    _one_line_warnings(caught, where)
    return image


def _read_pil_image(path: Path, where: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            check_image_size(im.height, im.width, where)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise InputError(f"image has {frames} frames; expected one radiograph", where=where,
                                 hint="save the frame you want as its own file")
            im.load()
            return _pil_to_grey(im)
    except UnidentifiedImageError as exc:
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
            raise InputError(f"not a valid {path.suffix} image", where=where,
                             hint="the file may be corrupt, or not what its name says") from exc
        raise InputError("unknown image format", where=where,
                         hint="use PNG, JPEG or DICOM (.dcm)") from exc
    except CxrgError:  # ours already say what is wrong (a bad $CXRG_MAX_IMAGE_* is not a corrupt file)
        raise
    except Exception as exc:  # truncated/corrupt data: OSError, ValueError, SyntaxError, decompression bomb
        raise InputError(f"cannot read image: {exc}", where=where,
                         hint="the file may be corrupt or truncated") from exc


def _pil_to_grey(im: Image.Image) -> np.ndarray:
    """Pillow image -> float32 grey on the file's own scale (8-bit / 255, 16-bit / 65535)."""
    mode = im.mode
    if mode == "1":
        return _scale(np.asarray(im), 0, 1)
    if mode == "L":
        return _scale(np.asarray(im), 0, 255)
    if mode.startswith("I;16") or mode == "I":  # 16-bit PNG/TIFF; 'I' is how older Pillows open them
        return _scale(np.asarray(im), 0, 65535)
    if mode == "F":
        return _scale(np.asarray(im), 0, 1)
    if mode in ("LA", "La"):
        return _scale(np.asarray(im.getchannel("L")), 0, 255)
    return _scale(_luminance(np.asarray(im.convert("RGB"))), 0, 255)  # P, PA, RGB, RGBA, CMYK, YCbCr, ...


def _read_dicom(path: Path, *, force: bool) -> np.ndarray:
    """DICOM -> grey in [0, 1]: Modality LUT, then VOI LUT or window, then MONOCHROME1 inversion.

    Without a VOI LUT or window the modality values are scaled by the range the header allows: stored
    values 0 .. 2**BitsStored - 1 (signed: -2**(BitsStored-1) .. 2**(BitsStored-1) - 1) passed through
    the rescale, widened to the actual min/max only if the data exceed it. A min-max stretch would make
    the same grey mean different things in different files; the header's range keeps the file's scale.
    """
    import warnings

    import pydicom

    where = str(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=force)
    except Exception as exc:
        import struct

        if isinstance(exc, struct.error | EOFError) or _truncation(str(exc)):
            raise InputError("DICOM file is truncated (it ends inside a data element)", where=where,
                             hint="copy or download the file again") from exc
        raise InputError(f"not a readable DICOM file: {exc}", where=where,
                         hint="the file may be corrupt or truncated") from exc
    if any(_truncation(str(w.message)) for w in caught) or _pixel_data_cut(path, ds):
        raise InputError("DICOM file is truncated (its data end before the pixel data does)", where=where,
                         hint="copy or download the file again")
    _one_line_warnings(caught, where)
    return dicom_pixels(ds, where, force=force)


def dicom_pixels(ds: Any, where: str, *, force: bool = False) -> np.ndarray:
    """A parsed DICOM dataset -> grey in [0, 1] (see _read_dicom); `where` names it in messages."""
    import warnings

    from pydicom.pixels import apply_color_lut

    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if force and "Rows" not in ds:  # parsed without a 'DICM' marker and found nothing DICOM-like
            raise InputError("not a DICOM image (no 'DICM' marker, no image attributes)", where=where,
                             hint="the file may be corrupt, or not DICOM despite its name")
        raise InputError("DICOM file has no pixel data: it is truncated, or not an image", where=where,
                         hint="pass the image object, not a report or a DICOMDIR; copy a cut file again")
    frames = _int(ds.get("NumberOfFrames"), 1)
    if frames > 1:
        raise InputError(f"multi-frame DICOM ({frames} frames); expected one radiograph", where=where,
                         hint="export the frame you want as its own file")
    if not _int(ds.get("Rows"), 0) or not _int(ds.get("Columns"), 0):
        raise InputError(f"DICOM image has zero size ({ds.get('Rows')} x {ds.get('Columns')})", where=where)
    check_image_size(_int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0), where)
    _default_transfer_syntax(ds)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            arr = ds.pixel_array
    except Exception as exc:
        if _truncation(str(exc)):
            raise InputError("DICOM file is truncated (less pixel data than its header states)",
                             where=where, hint="copy or download the file again") from exc
        raise _decode_error(ds, where, exc) from exc
    if any(_truncation(str(w.message)) for w in caught):
        raise InputError("DICOM file is truncated (less pixel data than its header states)", where=where,
                         hint="copy or download the file again")
    _one_line_warnings(caught, where)

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return _scale(_luminance(rgb), 0, np.iinfo(rgb.dtype).max)
    lo, hi = _stored_range(ds, arr)
    if arr.ndim == 3:  # RGB; pydicom already turned YBR into RGB
        return _scale(_luminance(arr), lo, hi)
    if arr.ndim != 2:
        raise InputError(f"unexpected DICOM pixel array shape {arr.shape}", where=where)

    values, lo, hi = _modality(arr, ds, lo, hi)
    if _dicom_display == "mimic-jpg":
        return mimic_jpg(values, photometric == "MONOCHROME1")
    image = _voi(values, ds)
    if image is None:
        image = _scale(values, lo, hi)
    if photometric == "MONOCHROME1":
        np.subtract(np.float32(1), image, out=image)
    return image


def _truncation(text: str) -> bool:
    """Whether a pydicom message says the file ends early."""
    text = text.lower()
    return any(word in text for word in ("truncat", "end of file", "unexpected end", "less than expected",
                                         "is shorter than", "fewer bytes", "not enough"))


def _pixel_data_cut(path: Path, ds: Any) -> bool:
    """A file whose parse stopped before its pixel data: the Pixel Data tag is in the bytes but not in the
    dataset (pydicom gives up quietly on a cut element)."""
    if any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return False
    try:
        data = path.read_bytes()
    except OSError:
        return False
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _default_transfer_syntax(ds: Any) -> None:
    """Files without a meta header (read with force) get the transfer syntax they were parsed with."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if little is False:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    else:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _decode_error(ds: Any, where: str, exc: Exception) -> InputError:
    """Translate pydicom's decoding failure into what to install (or that the data are broken)."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    name = f"{syntax.name} ({syntax})" if syntax is not None else "unknown"
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "missing dependencies" in str(exc):  # pydicom: "... because all plugins are missing dependencies"
        packages = next((v for k, v in _DECODER_PACKAGES.items() if str(syntax).startswith(k)), "python-gdcm")
        return InputError(f"cannot decode DICOM pixel data with transfer syntax {name}: no decoder installed",
                          where=where, hint=f"pip install {packages}")
    return InputError(f"cannot decode DICOM pixel data (transfer syntax {name}): {message}", where=where,
                      hint="the file may be corrupt or truncated")


def _stored_range(ds: Any, arr: np.ndarray) -> tuple[float, float]:
    """Nominal range of the stored values from BitsStored and PixelRepresentation."""
    bits = _int(ds.get("BitsStored"), 0) or arr.dtype.itemsize * 8
    if _int(ds.get("PixelRepresentation"), 0) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _modality(arr: np.ndarray, ds: Any, lo: float, hi: float) -> tuple[np.ndarray, float, float]:
    """Modality LUT or rescale slope/intercept, with the nominal range carried through it."""
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return apply_modality_lut(arr, ds), 0.0, 2.0**bits - 1
    slope = float(ds.get("RescaleSlope") or 1.0)
    intercept = float(ds.get("RescaleIntercept") or 0.0)
    if slope == 1.0 and intercept == 0.0:
        return arr, lo, hi
    values = arr.astype(np.float32)
    values *= np.float32(slope)
    values += np.float32(intercept)
    a, b = lo * slope + intercept, hi * slope + intercept
    return values, min(a, b), max(a, b)


def _first(value: Any) -> float:
    """WindowCenter/Width may hold several alternatives; the first is the default view."""
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        return float(value)
    return float(value[0])


def _voi(values: np.ndarray, ds: Any) -> np.ndarray | None:
    """VOI LUT (preferred, as in pydicom) or window -> float32 in [0, 1]; None when the file has neither.

    The window formulas are those of DICOM PS3.3 C.11.2.1, written in float32 in place so a 15-bit CR
    chest is not copied to float64; an unusable window (width too small, unknown function) is ignored.
    """
    if ds.get("VOILUTSequence"):
        from pydicom.pixels import apply_voi

        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        ints = values if np.issubdtype(values.dtype, np.integer) else np.rint(values).astype(np.int64)
        return _scale(apply_voi(ints, ds), 0, 2**bits - 1)
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    except (TypeError, ValueError, IndexError):
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    out = values.astype(np.float32)
    if function == "LINEAR" and width > 1:
        out -= np.float32(center - 0.5)
        out /= np.float32(width - 1)
        out += np.float32(0.5)
    elif function == "LINEAR" and width == 1:
        out = (out > center - 0.5).astype(np.float32)
    elif function == "LINEAR_EXACT" and width > 0:
        out -= np.float32(center)
        out /= np.float32(width)
        out += np.float32(0.5)
    elif function == "SIGMOID" and width > 0:
        out -= np.float32(center)
        out *= np.float32(-4.0 / width)
        np.exp(out, out=out)
        out += np.float32(1)
        np.reciprocal(out, out=out)
    else:
        return None
    np.clip(out, 0.0, 1.0, out=out)
    return out


def resolve_image(root: Path, relative: str) -> Path:
    """`relative` under `root`; a path that escapes the root (.., absolute elsewhere, links) is rejected."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise ValueError(f"image path {relative!r} escapes the images root {root}")
    return candidate
