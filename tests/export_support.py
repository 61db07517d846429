"""Small DICOM radiographs in the real IODs (CR, DX, secondary capture), made by the export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "SC": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}


def make_dicom(path: Path, kind: str = "DX", shape: tuple[int, int] = (96, 80), *, seed: int = 0,
               photometric: str = "MONOCHROME2", frame_of_reference: bool = True, pixels: bool = True,
               frames: int = 1) -> Path:
    """A single-frame (or `frames`-frame) 12-bit radiograph of the given IOD, written to `path`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rows, columns = shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[kind]
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SOP_CLASSES[kind]
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "P001", "19600101", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
    ds.ReferringPhysicianName = "Doctor^Referring"
    ds.Modality = {"SC": "OT"}.get(kind, kind)
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Manufacturer = "cxrg-tests"
    ds.PatientOrientation = ["L", "F"]
    ds.ContentDate, ds.ContentTime = "20240101", "120000"
    if kind == "SC":
        ds.ConversionType = "WSD"
        ds.Laterality = ""
    if kind == "CR":
        ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
        ds.PixelSpacing = [0.5, 0.5]
    if kind == "DX":
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.BodyPartExamined, ds.ViewPosition = "CHEST", "PA"
        ds.ImagerPixelSpacing = [0.2, 0.2]
        ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
        ds.BurnedInAnnotation, ds.LossyImageCompression = "NO", "00"
        ds.AcquisitionDate, ds.AcquisitionTime = "20240101", "120000"
        ds.DetectorType = "SCINTILLATOR"
        ds.ImageLaterality, ds.PresentationLUTShape, ds.PositionerType = "U", "IDENTITY", ""
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
        ds.AcquisitionContextSequence = []
        region = Dataset()
        region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "51185008", "SCT", "Chest"
        ds.AnatomicRegionSequence = [region]
    if frame_of_reference:
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixels:
        rng = np.random.default_rng(seed)
        data = rng.integers(0, 4096, size=(frames, rows, columns) if frames > 1 else (rows, columns),
                            dtype=np.uint16)
        ds.PixelData = data.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
