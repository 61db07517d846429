"""CNR, mIoU and min-max normalisation against values worked out by hand, plus fast == plain path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxrg.bench.metrics import boxes_mask, cnr, miou, normalise, score

RAMP = np.arange(8, dtype=np.float32).reshape(2, 4)
RIGHT_HALF = np.array([[False, False, True, True], [False, False, True, True]])


def test_cnr_hand_example():
    # inside {2,3,6,7}: mean 4.5, var 4.25; outside {0,1,4,5}: mean 2.5, var 4.25 -> 2 / sqrt(8.5)
    assert cnr(RAMP, RIGHT_HALF) == pytest.approx(2 / math.sqrt(8.5), rel=1e-12)


def test_cnr_is_signed():
    assert cnr(RAMP, ~RIGHT_HALF) == pytest.approx(-2 / math.sqrt(8.5), rel=1e-12)


def test_cnr_is_invariant_to_min_max_normalisation():
    assert cnr(normalise(RAMP), RIGHT_HALF) == pytest.approx(cnr(RAMP, RIGHT_HALF), rel=1e-6)


def test_miou_hand_example():
    # normalised ramp k/7; IoUs at 0.1..0.5: 4/7, 4/6, 3/6, 3/6, 2/6
    expected = (4 / 7 + 4 / 6 + 3 / 6 + 3 / 6 + 2 / 6) / 5
    assert miou(normalise(RAMP), RIGHT_HALF) == pytest.approx(expected, abs=1e-12)


def test_miou_threshold_is_strict():
    heatmap = np.array([[0.1, 0.5]], dtype=np.float64)
    mask = np.array([[True, True]])
    # at t=0.1 only 0.5 is predicted (0.1 > 0.1 is false): 1/2; at 0.2-0.4: 1/2; at 0.5: 0
    assert miou(heatmap, mask) == pytest.approx((0.5 * 4 + 0) / 5)


def test_constant_heatmap():
    constant = np.full((4, 5), 0.5, dtype=np.float32)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 1:3] = True
    assert cnr(constant, mask) == 0.0
    # as given: 0.5 > t for t in 0.1..0.4 (IoU = 4/20), not for 0.5
    assert miou(constant, mask) == pytest.approx(4 * (4 / 20) / 5)
    normalised = normalise(constant)
    assert np.array_equal(normalised, np.zeros((4, 5), np.float32))
    assert score(normalised, np.array([[1, 1, 3, 3]])) == (0.0, 0.0)


def test_all_nan_heatmap():
    heatmap = np.full((3, 3), np.nan, dtype=np.float32)
    mask = np.eye(3, dtype=bool)
    assert math.isnan(cnr(heatmap, mask))
    assert math.isnan(miou(heatmap, mask))  # one NaN policy: no valid pixel, both undefined (0.1 said 0)
    assert np.isnan(normalise(heatmap)).all()
    fast_cnr, fast_miou = score(heatmap, np.array([[0, 0, 1, 1]]))
    assert math.isnan(fast_cnr) and math.isnan(fast_miou)


def test_nan_pixels_ignored_by_cnr_and_unpredicted_by_miou():
    heatmap = np.array([[0.0, 1.0, 0.9, np.nan]], dtype=np.float64)
    mask = np.array([[False, True, True, True]])
    # inside valid {1.0, 0.9}: mean .95 var .0025; outside {0}: mean 0 var 0
    assert cnr(heatmap, mask) == pytest.approx(0.95 / math.sqrt(0.0025))
    # thresholds 0.1..0.5: predicted {1.0, 0.9}, mask 3 pixels -> IoU 2/3 every time
    assert miou(heatmap, mask) == pytest.approx(2 / 3)


def test_box_covering_whole_image():
    mask = np.ones((2, 4), bool)
    assert math.isnan(cnr(RAMP, mask))
    # predicted fraction per threshold on k/7: 7, 6, 5, 5, 4 of 8
    assert miou(normalise(RAMP), mask) == pytest.approx((7 + 6 + 5 + 5 + 4) / 8 / 5)
    fast = score(normalise(RAMP), np.array([[-10, -10, 50, 50]]))
    assert math.isnan(fast[0]) and fast[1] == pytest.approx(27 / 40)


def test_box_partly_outside_is_clipped():
    mask = boxes_mask(np.array([[3, 1, 10, 10]]), (2, 4))
    expected = np.zeros((2, 4), bool)
    expected[1, 3] = True
    assert np.array_equal(mask, expected)


def test_box_edges_round_to_pixel_centres():
    # a pixel is inside when its centre is: x0=1.4 keeps column 1 (centre 1.5), x0=1.6 drops it
    assert boxes_mask(np.array([[1.4, 0, 3, 1]]), (1, 4)).tolist() == [[False, True, True, False]]
    assert boxes_mask(np.array([[1.6, 0, 3, 1]]), (1, 4)).tolist() == [[False, False, True, False]]


def test_zero_variance_with_contrast_is_undefined():
    assert math.isnan(cnr(RIGHT_HALF.astype(np.float32), RIGHT_HALF))


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        miou(RAMP, np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="empty"):
        score(RAMP, np.array([[10, 10, 20, 20]]))


def _random_case(seed: int, with_nan: bool):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(20, 90, size=2)
    yy, xx = np.mgrid[0:h, 0:w]
    heatmap = np.exp(-((xx - rng.uniform(0, w)) ** 2 + (yy - rng.uniform(0, h)) ** 2) / (2 * (w / 4) ** 2))
    heatmap = (heatmap + 0.05 * rng.standard_normal((h, w))).astype(np.float32)
    if with_nan:
        heatmap[:, : rng.integers(1, w // 3)] = np.nan
    n = rng.integers(1, 4)
    x0 = rng.uniform(-5, 0.7 * w, n)  # every box keeps some pixels inside the image
    y0 = rng.uniform(-5, 0.7 * h, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(8, w / 2, n), y0 + rng.uniform(8, h / 2, n)], axis=1)
    return normalise(heatmap), boxes


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("with_nan", [False, True])
def test_fast_score_equals_plain_definitions(seed, with_nan):
    heatmap, boxes = _random_case(seed, with_nan)
    mask = boxes_mask(boxes, heatmap.shape)
    assert mask.any()
    fast_cnr, fast_miou = score(heatmap, boxes)
    plain_cnr = cnr(heatmap, mask)
    if math.isnan(plain_cnr):
        assert math.isnan(fast_cnr)
    else:
        assert fast_cnr == pytest.approx(plain_cnr, rel=1e-9, abs=1e-12)
    assert fast_miou == miou(heatmap, mask)


def test_fast_score_is_stable_for_a_tiny_spread_on_a_large_offset():
    rng = np.random.default_rng(3)
    heatmap = (1000.0 + 1e-3 * rng.standard_normal((50, 60))).astype(np.float32)
    boxes = np.array([[10, 10, 30, 40]])
    assert score(heatmap, boxes)[0] == pytest.approx(cnr(heatmap, boxes_mask(boxes, heatmap.shape)), rel=1e-6)


# ------------------------------------------------------------- invariances (scikit-learn common-test style)

_RNG = np.random.default_rng(7)
_MAP = _RNG.random((37, 53)).astype(np.float32)
_MAP[:, :5] = np.nan  # a NaN margin, as outside a model's crop
_BOXES = np.array([[10.0, 4.0, 30.0, 20.0], [25.0, 15.0, 50.0, 33.0]])


def _scores(heatmap, boxes):
    return score(normalise(heatmap), boxes)


@pytest.mark.parametrize("a,b", [(3.0, -7.0), (0.05, 0.5), (1e4, 1e4)])
def test_scores_are_invariant_to_affine_rescaling_of_the_heatmap(a, b):
    base = _scores(_MAP, _BOXES)
    scaled = _scores(_MAP.astype(np.float64) * a + b, _BOXES)
    assert scaled[0] == pytest.approx(base[0], rel=1e-4) and scaled[1] == pytest.approx(base[1], abs=1e-3)


def test_scores_are_invariant_to_transposing_map_and_boxes_together():
    transposed = _BOXES[:, [1, 0, 3, 2]]
    base, flipped = _scores(_MAP, _BOXES), _scores(_MAP.T.copy(), transposed)
    assert flipped[0] == pytest.approx(base[0], rel=1e-9) and flipped[1] == pytest.approx(base[1], rel=1e-9)


def test_scores_do_not_depend_on_box_order_or_repeats():
    base = _scores(_MAP, _BOXES)
    assert _scores(_MAP, _BOXES[::-1]) == base
    assert _scores(_MAP, np.vstack([_BOXES, _BOXES[:1]])) == base


def test_nan_margins_do_not_count_as_pixels():
    wider = np.full((37, 60), np.nan, dtype=np.float32)
    wider[:, :53] = _MAP
    base, padded = _scores(_MAP, _BOXES), _scores(wider, _BOXES)
    assert padded[0] == pytest.approx(base[0], rel=1e-9) and padded[1] == pytest.approx(base[1], rel=1e-9)
