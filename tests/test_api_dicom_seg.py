"""Grounding.to_dicom_seg: the notebook route to the SEG `cxrg ground --format dicom-seg` writes."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from cxrg_test_support import run_cli
from export_support import make_dicom

import cxrg
from cxrg.errors import UsageError


def _segments(path):
    seg = pydicom.dcmread(path)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    return seg.pixel_array, str(algorithm.AlgorithmParameters), referenced, seg.StudyInstanceUID


def test_api_seg_equals_the_cli_seg(tmp_path):
    source = make_dicom(tmp_path / "chest.dcm", "DX", (96, 80), seed=3)
    assert run_cli("ground", str(source), "left lower pneumonia", "--model", "prior", "--format", "dicom-seg",
                   "--out", str(tmp_path / "cli")) == 0
    grounding = cxrg.ground(source, "left lower pneumonia", model="prior")
    written = grounding.to_dicom_seg(tmp_path / "api")
    assert written == tmp_path / "api" / "chest.prior.seg.dcm"
    api, cli = _segments(written), _segments(tmp_path / "cli" / "chest.prior.seg.dcm")
    np.testing.assert_array_equal(api[0], cli[0])
    assert api[1:] == cli[1:]
    assert "weights_fingerprint=" in api[1] and api[2] == pydicom.dcmread(source).SOPInstanceUID


def test_a_dataset_is_kept_as_the_source_and_an_array_needs_one(tmp_path):
    source = make_dicom(tmp_path / "chest.dcm", "CR", (96, 80), seed=4)
    dataset = pydicom.dcmread(source)
    from_dataset = cxrg.ground(dataset, "right upper pneumothorax", model="prior")
    pixels, _, referenced, study = _segments(from_dataset.to_dicom_seg(tmp_path / "ds.seg.dcm"))
    assert referenced == dataset.SOPInstanceUID and study == dataset.StudyInstanceUID
    assert pixels.shape[-2:] == (96, 80)

    from_array = cxrg.ground(from_dataset.image, "right upper pneumothorax", model="prior")
    with pytest.raises(UsageError, match="DICOM SEG needs a DICOM source"):
        from_array.to_dicom_seg(tmp_path / "array.seg.dcm")
    assert not (tmp_path / "array.seg.dcm").exists()
    again = _segments(from_array.to_dicom_seg(tmp_path / "given.seg.dcm", source=source))
    np.testing.assert_array_equal(again[0], pixels)
