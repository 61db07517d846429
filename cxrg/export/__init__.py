"""cxrg's results in the formats viewers and detection tools read (docs/viewer.md).

- `dicom_seg.write_dicom_seg`: a heatmap and its reported region as a DICOM Segmentation of the source
  radiograph (highdicom), for OHIF, 3D Slicer and PACS;
- `coco.write_coco`: a bench run's ground-truth boxes as a COCO dataset and each model's boxes as COCO
  results (pycocotools' loadRes and COCOeval read them);
- `run.export_run`: `cxrg export RUN_DIR --format dicom-seg|coco`;
- `grounding.ground_with_formats`: `cxrg ground --format dicom-seg`;
- `preview.render_seg`: a picture of a SEG over its film, drawn from the SEG file (no viewer needed).

highdicom is imported only when a SEG is made (it is a runtime dependency: see docs/viewer.md).
"""
