"""Conformance kit: what every HeatmapModel must satisfy. Plugin authors call it from their own tests.

    from cxrg.testing import check_model
    def test_my_model_conforms():
        check_model(MyModel(), weights_dir=tmp_weights)

Each check raises AssertionError with a message saying what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrg.registry import GroundTruthAccessError, HeatmapModel, ModelCard, Query

DEFAULT_PROMPT = "left lower pleural effusion"
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((300, 240), (200, 330))


def synthetic_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A smooth chest-like test image: two dark lung fields in a brighter body, plus a little noise."""
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = yy / height, xx / width
    lungs = np.exp(-(((xx - 0.3) / 0.13) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    lungs += np.exp(-(((xx - 0.7) / 0.13) ** 2 + ((yy - 0.5) / 0.25) ** 2))
    rng = np.random.default_rng(seed)
    image = 0.8 - 0.6 * lungs + 0.02 * rng.standard_normal(shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def synthetic_boxes(shape: tuple[int, int]) -> np.ndarray:
    """Two boxes (xyxy, original pixels) inside an image of `shape`."""
    height, width = shape
    return np.array([[0.55 * width, 0.55 * height, 0.85 * width, 0.8 * height],
                     [0.15 * width, 0.2 * height, 0.35 * width, 0.4 * height]])


def check_card(card: ModelCard) -> None:
    assert isinstance(card, ModelCard), "model.card must be a cxrg.registry.ModelCard"
    assert card.name and card.version and card.licence, "the card needs a name, version and licence"
    assert set(card.metrics) <= {"cnr", "miou"} and card.metrics, "card.metrics must name cnr and/or miou"


def check_model(model: HeatmapModel, weights_dir: Path | None = None, device: str = "cpu",
                prompt: str = DEFAULT_PROMPT,
                shapes: tuple[tuple[int, int], ...] = DEFAULT_SHAPES) -> None:
    """Run every conformance check on `model` (loading it first)."""
    check_card(model.card)
    model.load(weights_dir=weights_dir, device=device)
    for shape in shapes:
        image = synthetic_image(shape)
        boxes = synthetic_boxes(shape)
        query = Query(image=image, prompt=prompt, _boxes=boxes,
                      ground_truth_allowed=model.card.uses_ground_truth)
        try:
            first = model.heatmap(query)
        except GroundTruthAccessError as exc:
            raise AssertionError(f"{model.card.name}: {exc.one_line()}") from exc
        check_heatmap(first, shape, model.card.name)
        second = model.heatmap(query)
        assert np.array_equal(first, second, equal_nan=True), \
            f"{model.card.name}: two calls on the same query gave different heatmaps (not deterministic)"
        if not model.card.uses_ground_truth:
            moved = Query(image=image, prompt=prompt, _boxes=boxes[::-1] * 0.5, ground_truth_allowed=False)
            assert np.array_equal(first, model.heatmap(moved), equal_nan=True), \
                f"{model.card.name}: output depends on the ground truth although its card says it does not"


def check_heatmap(heatmap: np.ndarray, shape: tuple[int, int], name: str = "model") -> None:
    """Shape, dtype, and finiteness wherever the model saw pixels."""
    assert isinstance(heatmap, np.ndarray), f"{name}: heatmap must be a numpy array, got {type(heatmap)}"
    assert heatmap.shape == shape, f"{name}: heatmap shape {heatmap.shape}, expected the image's {shape}"
    assert heatmap.dtype == np.float32, f"{name}: heatmap dtype {heatmap.dtype}, expected float32"
    seen = ~np.isnan(heatmap)
    assert seen.any(), f"{name}: heatmap is NaN everywhere (the model saw no pixel)"
    assert np.isfinite(heatmap[seen]).all(), f"{name}: heatmap has infinite values where the model saw pixels"
