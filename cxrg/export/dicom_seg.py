"""A heatmap as a DICOM Segmentation of the source radiograph (highdicom), for OHIF, 3D Slicer and PACS.

One object per (image, model, prompt), named `<stem>.<model>.seg.dcm`, with two segments on the source's
own pixel grid:

1. the heatmap: min-max normalised (NaN, where the model saw no pixel, as 0), stored as fractional values
   0..255 (PROBABILITY type; a relative score, not a calibrated probability);
2. the region cxrg reports (cxrg.export.regions.reported_region), stored as 0 or 255.

DICOM gives a Segmentation one type for all its segments, so both are segments of one FRACTIONAL object:
the second holds only the values 0 and 1 and so reads back as an exact binary mask. Labels carry the
prompt and the model, the Segment Description the phrase and the prompt; codes for the finding and the
anatomy come from cxrg.export.codes; the algorithm identification names cxrg's version, the model, its
version and the weights fingerprint. The object references the source image (Referenced Series and
Instance), shares its patient, study and Frame of Reference (when the source has one; a CR or secondary
capture usually has none, and then neither has the SEG), and is a new series. Everything is checked before
anything is written, and the file is written atomically: a refused input leaves no file behind.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.errors import InputError

SEG_SUFFIX = ".seg.dcm"
NOT_DICOM = "DICOM SEG needs a DICOM source"
SERIES_NUMBER = 9901
"""Series Number of the SEG series: high, so it sorts after the acquisition's own series in a viewer."""
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_LO = 64  # longest Long String (LO): labels, series description
_ST = 1024  # longest Short Text (ST): segment description


def seg_name(stem: str, model: str) -> str:
    """`<stem>.<model>.seg.dcm`, the name `cxrg ground` gives the SEG of one image."""
    return f"{stem}.{model}{SEG_SUFFIX}"


def is_dicom_file(path: Path) -> bool:
    """Whether cxrg reads `path` as DICOM: the 'DICM' marker or a DICOM suffix (cxrg.images' rule)."""
    from cxrg.images import DICOM_SUFFIXES

    try:
        with Path(path).open("rb") as handle:
            marker = handle.read(132)[128:132] == b"DICM"
    except OSError:
        marker = False
    return marker or Path(path).suffix.lower() in DICOM_SUFFIXES


def read_source(source: Any) -> Any:
    """A path (or a pydicom Dataset) -> the source image's dataset, refused with one line when it is not a
    single-frame DICOM image. Pixel data are not decoded (deferred); only the header is used."""
    import pydicom

    if isinstance(source, pydicom.Dataset):
        ds, where = source, str(getattr(source, "filename", None) or "the dataset")
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise InputError("source image not found", where=where, hint="check the path")
        if not is_dicom_file(path):
            raise InputError(NOT_DICOM, where=where,
                             hint=f"this file is not DICOM ({path.suffix or 'no suffix'}); its heatmap, "
                                  "overlay and JSON are the outputs for it")
        try:
            ds = pydicom.dcmread(path, defer_size="1 KB", force=True)
        except Exception as exc:
            raise InputError(f"not a readable DICOM file: {exc}", where=where,
                             hint="the file may be corrupt or truncated") from exc
        if "SOPClassUID" not in ds and "Rows" not in ds:  # parsed by force, found nothing DICOM-like
            raise InputError(NOT_DICOM, where=where, hint="this file is not DICOM despite its name")
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InputError("the DICOM has no pixel data: it is not an image", where=where,
                         hint="give the radiograph's own image file, not a report, SEG or DICOMDIR")
    missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows",
                           "Columns") if not ds.get(k)]
    if missing:
        raise InputError(f"the DICOM lacks {', '.join(missing)}, which a SEG must reference", where=where,
                         hint="the file is not a complete DICOM image object")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise InputError(f"multi-frame DICOM ({frames} frames); a SEG is made for one radiograph",
                         where=where, hint="export the frame you want as its own file")
    return ds


def check_grid(ds: Any, array: np.ndarray, what: str, where: str) -> None:
    """Refuse an array that is not on the source's pixel grid."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    if array.ndim != 2 or array.shape != (rows, columns):
        shape = "x".join(str(n) for n in array.shape) or "a scalar"
        raise InputError(f"{what} is {shape} (rows x columns) but the source image is {rows}x{columns}",
                         where=where,
                         hint=f"give the {what} at the source's own pixel grid (as `cxrg ground` writes it)")


def _text(value: str, limit: int) -> str:
    """A DICOM string value: one line, no backslash (the value separator), at most `limit` bytes in UTF-8
    (the SEG's character set; checkers count bytes), cut with "..." at a character boundary."""
    clean = " ".join(str(value).replace("\\", "/").split())
    encoded = clean.encode("utf-8")
    if len(encoded) <= limit:
        return clean
    return encoded[: limit - 3].decode("utf-8", errors="ignore") + "..."


def fractional_values(heatmap: np.ndarray) -> np.ndarray:
    """The fractional segment before quantisation: min-max normalised, NaN as 0, float32."""
    from cxrg.geometry import normalise

    try:
        return np.nan_to_num(normalise(heatmap), nan=0.0).astype(np.float32)
    except ValueError as exc:  # infinite values
        raise InputError(f"heatmap is unusable: {exc}", hint="a model must return finite values or NaN"
                         ) from exc


def build_dicom_seg(source: Any, heatmap: np.ndarray, region: np.ndarray | None = None, *, phrase: str,
                    prompt: str, model: str, model_version: str = "", weights_fingerprint: str = "",
                    otsu: bool = False) -> Any:
    """The highdicom Segmentation (a pydicom Dataset) of `heatmap` over `source` (see the module
    docstring); `region` defaults to cxrg.export.regions.reported_region(heatmap, otsu)."""
    import highdicom as hd

    from cxrg import __version__
    from cxrg.export.codes import ALGORITHM_FAMILY_KEYWORD, dcm, segment_codes
    from cxrg.export.regions import reported_region

    ds = read_source(source)
    where = str(source) if isinstance(source, str | Path) else str(getattr(ds, "filename", None) or
                                                                       "the dataset")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    check_grid(ds, heatmap, "heatmap", where)
    fractional = fractional_values(heatmap)
    mask = reported_region(heatmap, otsu) if region is None else np.asarray(region)
    check_grid(ds, mask, "region", where)
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        raise InputError("region must be a boolean mask (or 0/1 values)", where=where)
    codes = segment_codes(prompt)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=_text(f"cxrg {model}", _LO), family=dcm(ALGORITHM_FAMILY_KEYWORD),
        version=_text(model_version or "unknown", _LO), source=_text(f"cxrg {__version__}", _LO),
        parameters={"cxrg_version": __version__, "model": _text(model, _LO),
                    "model_version": _text(model_version or "unknown", _LO),
                    "weights_fingerprint": _text(weights_fingerprint or "unknown", _LO),
                    "prompt": _text(prompt, _LO)})
    region_rule = "pixels above Otsu's threshold" if otsu else "largest region at or above half the maximum"
    about = f'phrase "{phrase}"; prompt "{prompt}"; model {model}'
    segments = []
    for number, (label, text) in enumerate((
            (f"heatmap: {prompt} ({model})",
             f"cxrg heatmap, min-max normalised, unseen pixels 0 (a relative score, not a probability); "
             f"{about}"),
            (f"region: {prompt} ({model})", f"cxrg reported region ({region_rule}); {about}")), start=1):
        description = hd.seg.SegmentDescription(
            segment_number=number, segment_label=_text(label, _LO),
            segmented_property_category=codes.category, segmented_property_type=codes.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            anatomic_regions=[codes.anatomy] if codes.anatomy is not None else None)
        description.SegmentDescription = _text(text, _ST)
        if codes.anatomy is not None and codes.side is not None:
            description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [
                hd.sr.CodedConcept(codes.side.value, codes.side.scheme_designator, codes.side.meaning)]
        segments.append(description)
    pixels = np.stack([fractional, mask.astype(np.float32)], axis=-1)[None]
    try:
        with warnings.catch_warnings():  # highdicom's multi-line notes on the source's names and values
            warnings.simplefilter("ignore", UserWarning)
            seg = hd.seg.Segmentation(
                source_images=[_usable_header(ds)], pixel_array=pixels,
                segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
                fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY, max_fractional_value=255,
                segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=SERIES_NUMBER,
                sop_instance_uid=hd.UID(), instance_number=1, manufacturer="cxrg",
                manufacturer_model_name=_text(model, _LO), software_versions=f"cxrg {__version__}",
                device_serial_number="none", content_label="CXRG",
                content_description=_text(f"cxrg {model}: {prompt}", _LO), omit_empty_frames=False,
                series_description=_text(f"cxrg {model}: {prompt}", _LO))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"cannot make a DICOM SEG for this source: {str(exc).splitlines()[0]}", where=where,
                         hint="the source header lacks what a Segmentation must copy") from exc
    seg.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: phrases and names in any language, written as given
    if "ImageOrientationPatient" not in ds:  # a projection radiograph: no plane in patient coordinates
        seg.PatientOrientation = ds.get("PatientOrientation", "")
        if ds.get("FrameOfReferenceUID"):  # shared, as the source's (highdicom was given the header without)
            seg.FrameOfReferenceUID = ds.FrameOfReferenceUID
            seg.PositionReferenceIndicator = ds.get("PositionReferenceIndicator", "")
    return seg


def _usable_header(ds: Any) -> Any:
    """The source header highdicom copies from, without what a SEG of a radiograph may not carry.

    A projection radiograph (no Image Orientation) has no plane in patient coordinates: given its Frame of
    Reference, highdicom would ask for plane positions, and its Pixel Spacing would become Pixel Measures
    without the slice thickness that DICOM requires with them (highdicom's own reader then fails on the
    file). Both are left out of what highdicom sees; build_dicom_seg puts the Frame of Reference UID back,
    and a viewer takes the spacing from the referenced image. A Patient's Age not of the form nnnD/W/M/Y
    (the SIIM files write "62") is left out too. The caller's dataset is left as it was."""
    import re

    import pydicom

    drop = set()
    if "ImageOrientationPatient" not in ds:
        drop.update({"FrameOfReferenceUID", "PositionReferenceIndicator", "PixelSpacing"})
    age = ds.get("PatientAge")
    if age and not re.fullmatch(r"\d{3}[DWMY]", str(age)):
        drop.add("PatientAge")
    if not any(keyword in ds for keyword in drop):
        return ds
    header = pydicom.Dataset()  # a new dataset holding the same elements
    for element in ds:
        if element.keyword not in drop:
            header.add(element)
    header.file_meta = ds.file_meta
    return header


def write_dicom_seg(source: Any, heatmap: np.ndarray, region: np.ndarray | None = None, *, phrase: str,
                    prompt: str, model: str, model_version: str = "", weights_fingerprint: str = "",
                    out: str | Path, otsu: bool = False) -> Path:
    """Write the SEG of `heatmap` over `source` (a path or a pydicom Dataset) atomically; returns its path.

    `out` is a file ending in .dcm, or a folder where it is named `<stem>.<model>.seg.dcm` (stem: the
    source file's name up to its first dot, or its SOP Instance UID for a dataset without a file)."""
    from cxrg.runs import atomic_write_bytes

    seg = build_dicom_seg(source, heatmap, region, phrase=phrase, prompt=prompt, model=model,
                          model_version=model_version, weights_fingerprint=weights_fingerprint, otsu=otsu)
    out = Path(out)
    if out.suffix.lower() != ".dcm" or out.is_dir():
        filename = source if isinstance(source, str | Path) else getattr(source, "filename", None)
        reference = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        stem = Path(filename).name.split(".")[0] if filename else str(reference.ReferencedSOPInstanceUID)
        out = out / seg_name(stem, model)
    buffer = io.BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    atomic_write_bytes(out, buffer.getvalue())
    return out
