"""cxrg.images: reading PNG/JPEG/DICOM into the image convention, and the model transform's exact inverse."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_windowing
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from cxrg.errors import InputError
from cxrg.images import CropGeometry, ResizeCenterCrop, read_image, to_xywh, to_xyxy

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"


@pytest.fixture(autouse=True)
def _gradual_underflow():
    """Loading an LDM flushes denormal floats process-wide (a CPU speed-up); hypothesis's float strategies
    refuse to run in that mode, so these tests run with ordinary IEEE floats."""
    import torch

    torch.set_flush_denormal(False)



def data_store_file(name: str) -> Path:
    data_store = pytest.importorskip("data_store")
    return Path(data_store.__file__).parent / "data" / name


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
                preamble: bool = True, **tags) -> Path:
    """A minimal single-frame DICOM (explicit VR little endian) written with pydicom."""
    pixels = np.asarray(pixels)
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    if preamble:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(path, enforce_file_format=True)
    else:  # bare dataset: no 128-byte preamble, no 'DICM', no meta header
        pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
    return path


TWELVE_BIT = np.array([[0, 1000], [2048, 4095]], dtype=np.uint16)


# ------------------------------------------------------------------------------------------ PNG / JPEG


def test_png_8bit_exact(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8)).save(path)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (1, 3) and image.flags.c_contiguous
    np.testing.assert_array_equal(image, np.float32([[0, 128, 255]]) / np.float32(255))


def test_png_16bit_keeps_the_file_scale(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)).save(path)
    image = read_image(str(path))
    assert image[0, 3] == 1.0 and image[0, 0] == 0.0
    assert image[0, 2] == np.float32(32768) / np.float32(65535)
    assert image[0, 1] == pytest.approx(1000 / 65535, rel=1e-6)  # not min-max stretched

    narrow = tmp_path / "narrow.png"
    Image.fromarray(np.array([[1000, 2000]], dtype=np.uint16)).save(narrow)
    np.testing.assert_allclose(read_image(narrow), [[1000 / 65535, 2000 / 65535]], rtol=1e-6)


def test_colour_and_other_pil_modes_become_luminance(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [100, 100, 100]]], dtype=np.uint8)
    expected = np.array([[0.299, 0.587, 0.114, 100 / 255]])
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), expected, atol=1e-6)

    rgba = np.concatenate([rgb, np.full((1, 4, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgba.png"), expected, atol=1e-6)

    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    np.testing.assert_allclose(read_image(tmp_path / "palette.png"), expected, atol=0.02)

    Image.fromarray(np.array([[0, 51]], np.uint8)).convert("LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), [[0, 0.2]], atol=1e-6)

    Image.fromarray(np.array([[0, 32768, 65535]], np.int32)).save(tmp_path / "i32.tif")
    np.testing.assert_allclose(read_image(tmp_path / "i32.tif"), [[0, 32768 / 65535, 1]], rtol=1e-6)


def test_rgb_jpeg_of_a_grey_ramp(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    Image.fromarray(np.stack([ramp] * 3, axis=2)).save(tmp_path / "x.jpg", quality=95)
    image = read_image(tmp_path / "x.jpg")
    assert image.shape == (32, 64) and image.dtype == np.float32
    np.testing.assert_allclose(image, ramp / 255.0, atol=0.03)


# --------------------------------------------------------------------------------------------- DICOM


def test_dicom_monochrome2_scaled_by_bits_stored(tmp_path):
    image = read_image(write_dicom(tmp_path / "a.dcm", TWELVE_BIT))
    np.testing.assert_allclose(image, TWELVE_BIT / 4095.0, rtol=1e-6)
    assert image.dtype == np.float32


def test_dicom_monochrome1_is_inverted(tmp_path):
    image = read_image(write_dicom(tmp_path / "a.dcm", TWELVE_BIT, photometric="MONOCHROME1"))
    np.testing.assert_allclose(image, 1 - TWELVE_BIT / 4095.0, atol=1e-6)
    assert image[0, 0] == 1.0 and image[1, 1] == 0.0  # lowest stored value is white in MONOCHROME1


def test_dicom_bits_above_bits_stored_are_not_part_of_the_value(tmp_path):
    pixels = np.array([[0, 5000], [8190, 100]], dtype=np.uint16)  # 13 bits used, header says 12
    image = read_image(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12))
    np.testing.assert_allclose(image, (pixels & 0x0FFF) / 4095.0, rtol=1e-6)  # pydicom masks, as DICOM says


def test_values_beyond_the_nominal_range_widen_it(tmp_path):
    Image.fromarray(np.array([[-100, 0, 99900]], np.int32)).save(tmp_path / "wide.tif")
    np.testing.assert_allclose(read_image(tmp_path / "wide.tif"), [[0, 1e-3, 1]], rtol=1e-5)


def test_dicom_signed_pixels(tmp_path):
    pixels = np.array([[-32768, 0, 32767]], dtype=np.int16)
    image = read_image(write_dicom(tmp_path / "a.dcm", pixels, bits_stored=16))
    np.testing.assert_allclose(image, [[0, 32768 / 65535, 1]], rtol=1e-6)


def test_dicom_rescale_without_window(tmp_path):
    pixels = np.array([[0, 500], [4095, 1000]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "a.dcm", pixels, RescaleSlope=2, RescaleIntercept=-1000))
    # modality values 2 * stored - 1000 over the rescaled 12-bit range -1000 .. 7190
    np.testing.assert_allclose(image, pixels * 2 / 8190.0, rtol=1e-6)


def test_dicom_window_from_the_file(tmp_path):
    pixels = np.array([[1000, 1536, 1537, 2048, 2559, 2560, 4000]], dtype=np.uint16)
    image = read_image(write_dicom(tmp_path / "a.dcm", pixels, WindowCenter=2048, WindowWidth=1024))
    # DICOM LINEAR: (x - (c - 0.5)) / (w - 1) + 0.5, clipped
    expected = np.clip((pixels - 2047.5) / 1023 + 0.5, 0, 1)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    assert image[0, 1] == 0 and image[0, 5] == 1 and image[0, 3] == pytest.approx(0.5 + 0.5 / 1023)

    inverted = read_image(write_dicom(tmp_path / "b.dcm", pixels, photometric="MONOCHROME1",
                                      WindowCenter=2048, WindowWidth=1024))
    np.testing.assert_allclose(inverted, 1 - expected, atol=1e-6)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_dicom_window_matches_pydicom(tmp_path, function):
    pixels = np.arange(0, 4096, 16, dtype=np.uint16).reshape(16, 16)
    tags = dict(WindowCenter=[40, 400], WindowWidth=[400, 2000], VOILUTFunction=function,
                RescaleSlope=1, RescaleIntercept=-1024)
    path = write_dicom(tmp_path / "a.dcm", pixels, **tags)
    ds = pydicom.dcmread(path)
    reference = apply_windowing(pixels * 1.0 - 1024, ds)  # pydicom's output spans the rescaled 12-bit range
    reference = (reference + 1024) / 4095
    np.testing.assert_allclose(read_image(path), reference, atol=2e-6)


def test_dicom_rescale_then_window_in_hounsfield_units(tmp_path):
    pixels = np.array([[0, 1064, 2000]], dtype=np.uint16)  # HU -1024, 40, 976
    image = read_image(write_dicom(tmp_path / "a.dcm", pixels, RescaleSlope=1, RescaleIntercept=-1024,
                                   WindowCenter=40, WindowWidth=400))
    np.testing.assert_allclose(image, [[0, (40 - 39.5) / 399 + 0.5, 1]], atol=1e-6)


def test_dicom_rgb_becomes_luminance(tmp_path):
    rgb = np.array([[[255, 0, 0], [10, 10, 10]]], dtype=np.uint8)
    image = read_image(write_dicom(tmp_path / "a.dcm", rgb, photometric="RGB", bits_stored=8))
    np.testing.assert_allclose(image, [[0.299, 10 / 255]], atol=1e-6)


def test_dicom_recognised_by_preamble_or_extension(tmp_path):
    no_extension = write_dicom(tmp_path / "scan", TWELVE_BIT)
    np.testing.assert_allclose(read_image(no_extension), TWELVE_BIT / 4095.0, rtol=1e-6)
    other_extension = write_dicom(tmp_path / "scan.img", TWELVE_BIT, photometric="MONOCHROME1")
    np.testing.assert_allclose(read_image(other_extension), 1 - TWELVE_BIT / 4095.0, atol=1e-6)
    bare = write_dicom(tmp_path / "bare.dcm", TWELVE_BIT, preamble=False)  # old files with no meta header
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_allclose(read_image(bare), TWELVE_BIT / 4095.0, rtol=1e-6)


def test_dicom_multi_frame_is_an_input_error(tmp_path):
    frames = np.zeros((2, 3, 4), dtype=np.uint16)
    path = write_dicom(tmp_path / "a.dcm", frames[0], NumberOfFrames=2)
    ds = pydicom.dcmread(path)
    ds.PixelData = frames.tobytes()
    ds.save_as(path)
    with pytest.raises(InputError, match="multi-frame") as err:
        read_image(path)
    assert err.value.where == str(path)


def test_dicom_zero_size_and_no_pixels(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", np.zeros((0, 0), np.uint16))
    with pytest.raises(InputError, match="zero size") as err:
        read_image(path)
    assert str(path) in str(err.value)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(InputError, match="no pixel data"):
        read_image(path)


def test_dicom_corrupt_compressed_data_names_the_transfer_syntax(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", TWELVE_BIT)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"not a jpeg 2000 codestream"])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    with pytest.raises(InputError, match="JPEG 2000") as err:
        read_image(path)
    assert err.value.where == str(path)


def test_dicom_missing_decoder_says_what_to_install():
    """pydicom's 'plugins are missing dependencies' becomes an InputError naming the package to install."""
    path = data_store_file("JPGLosslessP14SV1_1s_1f_8b.dcm")
    script = (
        "import sys\n"
        "for name in ('libjpeg', 'pylibjpeg', 'gdcm', 'pyjpegls'): sys.modules[name] = None\n"
        "from cxrg.errors import InputError\nfrom cxrg.images import read_image\n"
        f"try:\n    read_image({str(path)!r})\nexcept InputError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "JPEG Lossless" in out.stdout and "1.2.840.10008.1.2.4.70" in out.stdout, out.stderr
    assert "pip install pylibjpeg pylibjpeg-libjpeg" in out.stdout
    assert str(path) in out.stdout


# ---------------------------------------------------------------------------------------- bad files


def test_bad_files_are_input_errors_naming_the_file(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.arange(4096, dtype=np.uint16).reshape(64, 64).astype(np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    garbage_png = tmp_path / "garbage.png"
    garbage_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    garbage_dcm = tmp_path / "garbage.dcm"
    garbage_dcm.write_bytes(b"\x01\x02" * 100)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cases = {truncated: "cannot read", garbage_png: "not a valid .png image", text: "unknown image format",
             garbage_dcm: "not a DICOM image", empty: "empty", tmp_path: "directory",
             tmp_path / "missing.png": "not found"}
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as err:
            read_image(path)
        assert err.value.where == str(path)
        assert str(path) in str(err.value)


def test_multi_frame_tiff_is_an_input_error(tmp_path):
    path = tmp_path / "stack.tif"
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 255)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="2 frames"):
        read_image(path)


# ------------------------------------------------------------------------------ the real CR chest (MIT)


@pytest.fixture(scope="module")
def rg1() -> np.ndarray:
    return read_image(data_store_file("RG1_UNCR.dcm"))


def test_real_cr_chest_monochrome1_windowed(rg1):
    raw = pydicom.dcmread(data_store_file("RG1_UNCR.dcm")).pixel_array  # 15-bit, window 15000/30000
    assert rg1.shape == raw.shape == (1955, 1841) and rg1.dtype == np.float32 and rg1.flags.c_contiguous
    assert 0 <= rg1.min() and rg1.max() <= 1
    expected = 1 - np.clip((raw[::97, ::89] - 14999.5) / 29999 + 0.5, 0, 1)  # file's window, then inverted
    np.testing.assert_allclose(rg1[::97, ::89], expected, atol=1e-6)
    h, w = rg1.shape
    rows = slice(int(0.3 * h), int(0.55 * h))
    mediastinum = rg1[rows, int(0.47 * w):int(0.53 * w)].mean()
    right_lung, left_lung = rg1[rows, int(0.22 * w):int(0.28 * w)], rg1[rows, int(0.67 * w):int(0.73 * w)]
    lungs = (right_lung.mean() + left_lung.mean()) / 2
    assert mediastinum > lungs + 0.2  # air dark, as MONOCHROME2 displays it


def test_real_cr_chest_jpeg2000_variants(rg1):
    lossless = read_image(data_store_file("RG1_J2KR.dcm"))
    np.testing.assert_array_equal(lossless, rg1)
    lossy = read_image(data_store_file("RG1_J2KI.dcm"))
    assert np.abs(lossy - rg1).mean() < 0.005 and np.abs(lossy - rg1).max() < 0.03


# ---------------------------------------------------------------------------- shared real images


SHARED_FILES = sorted(p for p in SHARED_IMAGES.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".dcm"))


@pytest.mark.skipif(not SHARED_FILES, reason="shared real images not present")
def test_shared_real_images_read():
    for path in SHARED_FILES:
        image = read_image(path)
        assert image.ndim == 2 and image.dtype == np.float32 and min(image.shape) >= 256, path
        assert 0 <= image.min() < image.max() <= 1, path


@pytest.mark.skipif(not (SHARED_IMAGES / "siim_cr_pa_monochrome1.dcm").exists(), reason="shared data absent")
def test_shared_siim_monochrome1_is_the_inverse_of_monochrome2():
    """The two SIIM files hold the same stored pixels; only PhotometricInterpretation differs."""
    one, two = (SHARED_IMAGES / f"siim_cr_pa_monochrome{i}.dcm" for i in (1, 2))
    assert pydicom.dcmread(one).PixelData == pydicom.dcmread(two).PixelData
    m1, m2 = read_image(one), read_image(two)
    np.testing.assert_allclose(m1, 1 - m2, atol=1e-6)
    h, w = m2.shape
    rows = slice(int(0.3 * h), int(0.55 * h))
    assert m2[rows, int(0.47 * w):int(0.53 * w)].mean() > m2[rows, int(0.22 * w):int(0.28 * w)].mean()


# ------------------------------------------------------------------------------------------- boxes


def test_xywh_xyxy():
    xywh = np.array([[10, 20, 30, 40], [0, 0, 1, 1]])
    np.testing.assert_array_equal(to_xyxy(xywh), [[10, 20, 40, 60], [0, 0, 1, 1]])
    np.testing.assert_array_equal(to_xywh(to_xyxy(xywh)), xywh)
    np.testing.assert_array_equal(to_xyxy([1, 2, 3, 4]), [1, 2, 4, 6])
    assert xywh[0, 2] == 30  # inputs are not modified


# --------------------------------------------------------------------------------- model transform


@pytest.mark.parametrize(("h", "w", "size", "expected"), [
    (100, 150, 10, (10, 15, 2, 0)),  # landscape: odd surplus, crop starts at (15 - 10) // 2
    (300, 200, 512, (768, 512, 0, 128)),  # portrait
    (1024, 1024, 512, (512, 512, 0, 0)),  # square
    (4, 6, 3, (3, 5, 1, 0)),  # 4.5 rounds half up
    (1955, 1841, 512, (544, 512, 0, 16)),  # RG1_UNCR: 1955 * 512 / 1841 = 543.7
])
def test_geometry(h, w, size, expected):
    g = ResizeCenterCrop(size).geometry(h, w)
    assert isinstance(g, CropGeometry)
    assert (g.resized_h, g.resized_w, g.left, g.top) == expected
    assert (g.src_h, g.src_w, g.size) == (h, w, size)
    assert g.scale_x == g.resized_w / w and g.scale_y == g.resized_h / h


def test_points_and_boxes_known_values():
    t = ResizeCenterCrop(10)  # 100 x 150 -> 10 x 15, crop from x = 2
    np.testing.assert_allclose(t.points_to_model([[20, 0], [120, 100], [0, 50]], 100, 150),
                               [[0, 0], [10, 10], [-2, 5]])
    np.testing.assert_allclose(t.boxes_to_model([[20, 10, 70, 60]], 100, 150), [[0, 1, 5, 6]])
    np.testing.assert_allclose(t.boxes_from_model([[0, 0, 10, 10]], 100, 150), [[20, 0, 120, 100]])
    assert t.geometry(100, 150).source_box == pytest.approx((20, 0, 120, 100))


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 5000), w=st.integers(1, 5000), size=st.integers(1, 1024),
       xy=st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)), min_size=1, max_size=5))
def test_points_round_trip(h, w, size, xy):
    t = ResizeCenterCrop(size)
    points = np.array(xy)
    np.testing.assert_allclose(t.points_from_model(t.points_to_model(points, h, w), h, w), points,
                               rtol=1e-12, atol=1e-8)
    model = t.points_to_model(points, h, w)
    np.testing.assert_allclose(t.points_to_model(t.points_from_model(model, h, w), h, w), model,
                               rtol=1e-12, atol=1e-8)


def test_boxes_round_trip():
    t = ResizeCenterCrop(512)
    boxes = np.array([[10.5, 20, 300, 400], [0, 0, 1841, 1955], [-5, 7, 2000, 2100]])
    for h, w in [(1955, 1841), (1841, 1955), (512, 512), (37, 1000)]:
        np.testing.assert_allclose(t.boxes_from_model(t.boxes_to_model(boxes, h, w), h, w), boxes,
                                   rtol=1e-12, atol=1e-9)


def test_heatmap_nan_outside_the_crop_landscape():
    t = ResizeCenterCrop(10)  # 100 x 150: pixel x's centre is (x + 0.5) * 0.1 - 2 in model units
    out = t.heatmap_to_image(np.ones((10, 10)), 100, 150)
    assert out.shape == (100, 150) and out.dtype == np.float32
    nan_columns = np.isnan(out).all(axis=0)
    # inside iff 0 <= (x + 0.5) * 0.1 - 2 < 10, i.e. x in 20 .. 119: 20 NaN columns left, 30 right
    assert nan_columns.sum() == 50 and nan_columns[:20].all() and nan_columns[120:].all()
    assert np.isfinite(out[:, 20:120]).all() and (out[:, 20:120] == 1).all()


def test_heatmap_nan_outside_the_crop_portrait():
    t = ResizeCenterCrop(512)
    g = t.geometry(300, 200)  # 768 x 512, top 128: rows whose centre * 2.56 - 128 is in [0, 512)
    out = t.heatmap_to_image(np.zeros((512, 512)), 300, 200)
    inside = [y for y in range(300) if 0 <= (y + 0.5) * g.scale_y - 128 < 512]
    assert (inside[0], inside[-1]) == (50, 249)
    assert np.isnan(out[:50]).all() and np.isnan(out[250:]).all() and np.isfinite(out[50:250]).all()


def test_heatmap_ramp_values_by_hand():
    t = ResizeCenterCrop(10)
    ramp_x = np.tile(np.arange(10, dtype=np.float32), (10, 1))  # value = model column index
    out = t.heatmap_to_image(ramp_x, 100, 150)
    # x -> (x + 0.5) * 0.1 - 2 - 0.5, clamped to [0, 9]
    for x, value in [(20, 0.0), (24, 0.0), (25, 0.05), (70, 4.55), (114, 8.95), (119, 9.0)]:
        assert out[37, x] == pytest.approx(value, abs=1e-5), x
    out = t.heatmap_to_image(ramp_x.T, 150, 100)  # portrait, ramp along y
    for y, value in [(20, 0.0), (25, 0.05), (70, 4.55), (119, 9.0)]:
        assert out[y, 50] == pytest.approx(value, abs=1e-5), y
    plane = ramp_x + 10 * ramp_x.T  # bilinear reproduces a plane exactly
    out = t.heatmap_to_image(plane, 100, 150)
    assert out[45, 70] == pytest.approx(4.55 + 10 * ((45 + 0.5) * 0.1 - 0.5), abs=1e-4)


def test_heatmap_to_image_is_fast_for_big_images():
    t = ResizeCenterCrop(512)
    heat = np.random.default_rng(0).random((512, 512), dtype=np.float32)
    start = time.perf_counter()
    out = t.heatmap_to_image(heat, 2000, 2400)
    assert time.perf_counter() - start < 1.0
    assert np.nanmin(out) >= heat.min() and np.nanmax(out) <= heat.max()


def test_heatmap_wrong_shape():
    with pytest.raises(ValueError, match="512 x 512"):
        ResizeCenterCrop(512).heatmap_to_image(np.zeros((64, 64)), 100, 100)


def test_transform_constant_shape_dtype():
    t = ResizeCenterCrop(64)
    for shape in [(300, 200), (200, 300), (64, 64), (30, 50)]:
        out = t(np.full(shape, 0.37, dtype=np.float32))
        assert out.shape == (64, 64) and out.dtype == np.float32 and out.flags.c_contiguous
        np.testing.assert_allclose(out, 0.37, atol=1e-6)


@pytest.mark.parametrize(("h", "w", "atol"), [(200, 330, 0.05), (40, 66, 1e-3)])  # shrink, enlarge
def test_transform_agrees_with_point_mapping_and_inverse(h, w, atol):
    """A ramp image I(x) = x + 0.5 shows, at each model pixel, the original x its centre maps back to.

    Enlarging is exact; when shrinking, the antialiasing filter's discrete taps shift a ramp by a few
    hundredths of a source pixel.
    """
    size = 64
    t = ResizeCenterCrop(size)
    image = np.tile(np.arange(w, dtype=np.float32) + 0.5, (h, 1))
    model = t(image)
    centres = np.stack([np.arange(size) + 0.5, np.full(size, 10.0)], axis=1)
    expected = t.points_from_model(centres, h, w)[:, 0]
    np.testing.assert_allclose(model[10, 2:-2], expected[2:-2], atol=atol)
    back = t.heatmap_to_image(model, h, w)
    x0, _, x1, _ = t.geometry(h, w).source_box
    inside = slice(int(x0) + 3, int(x1) - 3)
    np.testing.assert_allclose(back[:, inside], image[:, inside], atol=atol)
    assert np.isnan(back[:, : int(x0)]).all() and np.isnan(back[:, int(np.ceil(x1)) + 1:]).all()


def test_transform_matches_torch_antialiased_bilinear():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    image = np.random.default_rng(1).random((300, 211), dtype=np.float32)
    t = ResizeCenterCrop(128)
    g = t.geometry(*image.shape)
    ref = F.interpolate(torch.from_numpy(image)[None, None], size=(g.resized_h, g.resized_w),
                        mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(t(image), ref[g.top:g.top + 128, g.left:g.left + 128], atol=1e-5)


def test_import_does_not_load_torch_or_pydicom():
    code = "import sys, cxrg.images; print('torch' in sys.modules, 'pydicom' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
