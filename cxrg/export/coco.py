"""A bench run's boxes in COCO format: the ground truth as a dataset, each model's boxes as results.

- `ground_truth.json`: a COCO dataset (info, images, annotations, categories). A COCO "image" is one
  *sample*, an (image, phrase) pair, so that two phrases on one radiograph are scored apart as cxrg scores
  them; it carries `file_name` (the image path), `sample_id`, `phrase` and `prompt`. Categories are the
  run's classes; annotations the ground-truth boxes (bbox x, y, w, h at pixel edges, COCO's convention).
- `results.<model>.json`: a COCO results list (image_id, category_id, bbox, score) for every scored sample:
  each connected region of the saved map at or above half its maximum is a box, scored by the highest
  normalised value inside it (cxrg.export.regions.detections). MAIRA-2's map is its boxes rasterised, so
  its boxes come back (score 1.0: it gives no confidence; touching boxes merge).

Both load with pycocotools (`COCO(...)`, `coco.loadRes(...)`) and evaluate with COCOeval (iouType "bbox").
pycocotools cannot load an empty results list: a model without any box gets `[]` and a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxrg.export.saved import ExportResult, read_run_for_export, scored_heatmap

GROUND_TRUTH = "ground_truth.json"


def results_name(model: str) -> str:
    return f"results.{model}.json"


def _image_size(sample: Any, store: Any, models: list[str]) -> tuple[int, int] | None:
    """(height, width): the annotations', else a saved map's, else the image file's header."""
    if sample.image_size is not None:
        return sample.image_size
    for model in models:
        if store.has(model, sample.sample_id):
            return store.load(model, sample.sample_id)[1]
    if sample.image_path is not None and Path(sample.image_path).is_file():
        from cxrg.errors import CxrgError
        from cxrg.images import image_size

        try:
            return image_size(sample.image_path)
        except CxrgError:
            return None
    return None


def coco_dataset(run: Any, store: Any, result: ExportResult) -> tuple[dict[str, Any], dict[str, int]]:
    """(the COCO ground-truth dataset, sample id -> image id); samples without boxes or size are skipped."""
    from cxrg import __version__
    from cxrg.geometry import to_xywh

    categories = sorted({s.category for s in run.samples if s.category})
    category_id = {name: k for k, name in enumerate(categories, start=1)}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    image_ids: dict[str, int] = {}
    for sample in run.samples:
        if sample.error or not len(sample.boxes):
            result.skip("", sample.sample_id, f"no ground truth: {sample.error or 'no box'}")
            continue
        size = _image_size(sample, store, run.models)
        if size is None:
            result.skip("", sample.sample_id, "no ground truth: image size unknown (image not at hand)")
            continue
        image_id = len(images) + 1
        image_ids[sample.sample_id] = image_id
        images.append({"id": image_id, "file_name": str(sample.image_path or ""), "height": int(size[0]),
                       "width": int(size[1]), "sample_id": sample.sample_id, "phrase": sample.phrase,
                       "prompt": sample.prompt})
        for x, y, w, h in to_xywh(sample.boxes).tolist():
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category_id[sample.category], "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0})
    dataset = {"info": {"description": f"cxrg bench run {run.path.name}: ground truth",
                        "version": __version__, "dataset": run.dataset},
               "images": images, "annotations": annotations,
               "categories": [{"id": i, "name": name, "supercategory": "finding"}
                              for name, i in category_id.items()]}
    return dataset, image_ids


def coco_results(run: Any, store: Any, model: str, image_ids: dict[str, int], category_id: dict[str, int],
                 result: ExportResult) -> list[dict[str, Any]]:
    """One model's boxes as a COCO results list (module docstring)."""
    from cxrg.export.regions import detections

    out = []
    for sample in run.samples:
        if sample.sample_id not in image_ids:
            result.skip(model, sample.sample_id, "no ground truth for the sample")
            continue
        heatmap = scored_heatmap(run, store, model, sample, result)
        if heatmap is None:
            continue
        result.exported += 1
        for x, y, w, h, score in detections(heatmap):
            out.append({"image_id": image_ids[sample.sample_id], "category_id": category_id[sample.category],
                        "bbox": [x, y, w, h], "score": round(score, 6)})
    return out


def write_coco(run_dir: str | Path, out: str | Path, annotations: Path | None = None,
               images: Path | None = None) -> ExportResult:
    """Write OUT/ground_truth.json and OUT/results.<model>.json for the bench run in `run_dir`;
    `annotations`/`images` override the dataset paths in its config.json (a moved run)."""
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.runs import atomic_write_json, say

    run = read_run_for_export(Path(run_dir), annotations, images)
    store = HeatmapStore(run.path)
    result = ExportResult(Path(out))
    dataset, image_ids = coco_dataset(run, store, result)
    category_id = {c["name"]: c["id"] for c in dataset["categories"]}
    path = Path(out) / GROUND_TRUTH
    atomic_write_json(path, dataset)
    result.written.append(path)
    for model in run.models:
        boxes = coco_results(run, store, model, image_ids, category_id, result)
        path = Path(out) / results_name(model)
        atomic_write_json(path, boxes)
        result.written.append(path)
        if not boxes:
            say(f"coco: {model} has no box in this run: {path.name} is an empty list, which pycocotools' "
                "loadRes cannot read")
    return result
