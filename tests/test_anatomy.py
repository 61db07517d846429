"""The anatomical LUT: Gaussians, W2 matching, rendering, jitter, JSON, the ImaGenome build, the atlas."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.linalg import sqrtm

from cxrg.anatomy import (
    REGIONS,
    Gaussian2D,
    Lut,
    box_gaussian,
    build_lut_from_imagenome,
    draw_atlas,
    jitter,
    location_regions,
    locations_for_boxes,
    lut_from_regions,
    nearest_location,
    render_gaussians,
    single_component_locations,
    w2_squared,
)
from cxrg.anatomy.make_default_lut import make_default_lut
from cxrg.errors import InputError, UsageError
from cxrg.vocab import LOCATIONS, Prompt, split_location


def test_importing_vocab_and_anatomy_loads_neither_torch_nor_matplotlib():
    code = ("import sys, cxrg.vocab, cxrg.anatomy; "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ------------------------------------------------------------------------------------ Gaussians, W2


def test_box_gaussian_is_eq_6():
    g = box_gaussian((10, 20, 70, 50))
    assert (g.mu_x, g.mu_y, g.sigma_x, g.sigma_y) == (40, 35, 10, 5)
    assert box_gaussian((10, 20, 70, 50), sigma_divisor=3).sigma_x == 20
    with pytest.raises(InputError):
        box_gaussian((10, 20, 10, 50))
    with pytest.raises(InputError):
        Gaussian2D(0, 0, 0, 1)


def bures_w2_squared(a: Gaussian2D, b: Gaussian2D) -> float:
    """The general formula: ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)."""
    sa, sb = np.diag(a.sigma ** 2), np.diag(b.sigma ** 2)
    root_a = sqrtm(sa)
    cross = sqrtm(root_a @ sb @ root_a)
    return float(np.sum((a.mu - b.mu) ** 2) + np.trace(sa + sb - 2 * np.real(cross)))


def test_w2_squared_equals_the_general_bures_formula():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = Gaussian2D(*rng.uniform(0, 512, 2), *rng.uniform(1, 120, 2))
        b = Gaussian2D(*rng.uniform(0, 512, 2), *rng.uniform(1, 120, 2))
        assert w2_squared(a, b) == pytest.approx(bures_w2_squared(a, b), rel=1e-9)
    a = Gaussian2D(10, 20, 3, 4)
    assert w2_squared(a, a) == 0
    assert w2_squared(a, Gaussian2D(13, 24, 4, 6)) == pytest.approx(9 + 16 + 1 + 4)


# ------------------------------------------------------------------------------------------ default LUT


def test_default_lut_has_all_locations_and_says_it_is_an_approximation():
    lut = Lut.default()
    assert set(lut.components) == set(LOCATIONS)
    assert lut.size == 512
    assert lut.metadata["approximation"] is True
    assert "APPROXIMATION" in lut.metadata["note"] and "cxrg lut build" in lut.metadata["note"]


def test_shipped_default_lut_is_what_the_generator_makes():
    made = json.loads(json.dumps(make_default_lut().to_dict()))
    assert Lut.default().to_dict() == made


def test_laterality_patient_left_is_image_right():
    lut = Lut.default()
    for loc in LOCATIONS:
        side, _ = split_location(loc)
        comps = lut[loc]
        if side == "left" or loc == "lingular":
            assert len(comps) == 1 and comps[0].mu_x > 256, loc
        elif side == "right":
            assert len(comps) == 1 and comps[0].mu_x < 256, loc
        elif side == "bilateral" or loc == "pulmonary":
            right, left = comps
            assert right.mu_x < 256 < left.mu_x, loc
            assert abs((right.mu_x + left.mu_x) / 2 - 256) < 15, loc        # mirrored about the midline
            assert abs(right.mu_y - left.mu_y) < 15 and right.sigma_x == pytest.approx(left.sigma_x, rel=0.2)
    heart = lut["cardiomegaly"][0]
    assert heart.mu_x > 256  # two thirds of the heart lie on the patient's left


# ------------------------------------------------------------------------------------------- W2 matching


def box_of(g: Gaussian2D) -> tuple[float, float, float, float]:
    """The box a Gaussian came from by eq. 6: mu +- 3 sigma."""
    return (g.mu_x - 3 * g.sigma_x, g.mu_y - 3 * g.sigma_y, g.mu_x + 3 * g.sigma_x, g.mu_y + 3 * g.sigma_y)


def test_nearest_location_finds_the_location_a_box_was_made_from():
    lut = Lut.default()
    for loc in single_component_locations(lut):
        g = lut[loc][0]
        box = box_of(g)
        first_with_same_gaussian = next(other for other in LOCATIONS if lut[other] == (g,))
        assert nearest_location(box, lut) == first_with_same_gaussian
        shifted = (box[0] + 4, box[1] - 3, box[2] + 4, box[3] - 3)
        assert nearest_location(shifted, lut) == first_with_same_gaussian


def test_nearest_location_ties_and_candidates():
    lut = Lut.default()
    g = lut["left pleural"][0]  # pleural, base and lower share the lower lung zone
    box = (g.mu_x - 3 * g.sigma_x, g.mu_y - 3 * g.sigma_y, g.mu_x + 3 * g.sigma_x, g.mu_y + 3 * g.sigma_y)
    assert nearest_location(box, lut) == "left lower"
    assert nearest_location(box, lut, candidates=["right pleural", "left pleural"]) == "left pleural"
    assert "bilateral lower" not in single_component_locations(lut)
    with pytest.raises(UsageError):
        nearest_location(box, lut, candidates=["bilateral lower"])


def test_locations_for_boxes_merges_both_sides():
    lut = Lut.default()

    def box(loc):
        return box_of(lut[loc][0])

    assert locations_for_boxes([box("right lower"), box("left lower")], lut) == ("bilateral lower",)
    assert locations_for_boxes([box("left apical"), box("cardiomegaly")], lut) == ("left apical",
                                                                                    "cardiomegaly")


# ------------------------------------------------------------------------------------------- rendering


def synthetic_lut() -> Lut:
    """Every region at a known place; right lung and left lung sit on pixel centres of a 128 x 256 grid."""
    regions = {name: Gaussian2D(100 + 10 * k, 100 + 10 * k, 20, 30) for k, name in enumerate(REGIONS)}
    regions["right lung"] = Gaussian2D(131, 258, 40, 80)
    regions["left lung"] = Gaussian2D(381, 258, 40, 80)
    return lut_from_regions(regions, {"source": "test"})


def test_render_peak_is_one_at_mu_at_any_size():
    lut = synthetic_lut()
    target = lut.render("pulmonary", (128, 256))  # x: 2 model px per pixel, y: 4
    assert target.shape == (128, 256) and target.dtype == np.float32
    assert target[64, 65] == pytest.approx(1.0) and target[64, 190] == pytest.approx(1.0)
    assert target.max() == pytest.approx(1.0) and target.min() >= 0
    assert np.unravel_index(np.argmax(lut.render("right", (128, 256))), (128, 256)) == (64, 65)
    assert lut.render(Prompt(("left",), "Edema"), 64).shape == (64, 64)
    one = render_gaussians([Gaussian2D(256.5, 100.5, 10, 10)], 512)
    assert one[100, 256] == 1.0 and one.sum() == pytest.approx(2 * np.pi * 100, rel=1e-3)


def test_render_combines_components_and_locations_by_maximum():
    lut = synthetic_lut()
    both = lut.render(["right", "left"], 96)
    assert np.array_equal(both, lut.render("pulmonary", 96))
    assert np.array_equal(both, np.maximum(lut.render("right", 96), lut.render("left", 96)))
    with pytest.raises(InputError):
        lut.render((), 64)
    with pytest.raises(InputError, match="valid locations"):
        lut.render("left lung", 64)


def test_location_regions_mapping():
    assert location_regions("left pleural") == ("left lower lung zone",)
    assert location_regions("bibasilar") == ("right lower lung zone", "left lower lung zone")
    assert location_regions("lingular") == ("left mid lung zone",)
    assert location_regions("pulmonary") == ("right lung", "left lung")
    assert location_regions("cardiomegaly") == ("cardiac silhouette",)
    assert location_regions("right apical") == ("right apical zone",)
    assert location_regions("bilateral costophrenic") == ("right costophrenic angle",
                                                          "left costophrenic angle")


# ----------------------------------------------------------------------------------------------- jitter


def test_jitter_is_seeded_and_within_five_percent():
    g = Gaussian2D(256, 256, 40, 5)
    assert jitter([g], np.random.default_rng(7)) == jitter([g], np.random.default_rng(7))
    assert jitter([g], np.random.default_rng(7)) != jitter([g], np.random.default_rng(8))
    draws = np.array([[j.mu_x, j.mu_y, j.sigma_x, j.sigma_y]
                      for j in jitter([g] * 2000, np.random.default_rng(0))])
    shift = draws - [256, 256, 40, 5]
    assert np.abs(shift[:, :3]).max() <= 25.6 and np.abs(shift[:, :3]).max() > 25.0
    assert draws[:, 3].min() == 2.5 and draws[:, 3].max() <= 5 + 25.6  # sigma floor: half the original
    lut = Lut.default()
    a = lut.render("bibasilar", 64, jitter=np.random.default_rng(1))
    assert np.array_equal(a, lut.render("bibasilar", 64, jitter=np.random.default_rng(1)))
    assert not np.array_equal(a, lut.render("bibasilar", 64))


# ------------------------------------------------------------------------------------------------- JSON


def test_lut_json_round_trip(tmp_path):
    lut = synthetic_lut()
    lut.save(tmp_path / "lut.json")
    again = Lut.load(tmp_path / "lut.json")
    assert again == lut
    data = json.loads((tmp_path / "lut.json").read_text())
    assert data["schema"] == "cxrg.lut" and data["schema_version"] == 1 and data["size"] == 512
    assert data["locations"]["pulmonary"][1] == {"mu_x": 381.0, "mu_y": 258.0,
                                                 "sigma_x": 40.0, "sigma_y": 80.0}


def _break(data, how):
    if how == "schema":
        data["schema"] = "something else"
    elif how == "version":
        data["schema_version"] = 99
    elif how == "size":
        data["size"] = -1
    elif how == "missing location":
        del data["locations"]["lingular"]
    elif how == "negative sigma":
        data["locations"]["left"][0]["sigma_x"] = -3
    elif how == "no mu":
        del data["locations"]["left"][0]["mu_x"]
    elif how == "components":
        data["locations"]["bibasilar"] = data["locations"]["bibasilar"][:1]
    return data


@pytest.mark.parametrize("how", ["schema", "version", "size", "missing location", "negative sigma", "no mu",
                                 "components"])
def test_malformed_lut_file_is_a_clear_input_error(tmp_path, how):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_break(synthetic_lut().to_dict(), how)))
    with pytest.raises(InputError) as err:
        Lut.load(path)
    assert err.value.where == str(path)


def test_unreadable_lut_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        Lut.load(tmp_path / "broken.json")
    with pytest.raises(InputError, match="not found"):
        Lut.load(tmp_path / "absent.json")


# ------------------------------------------------------------------------------- Chest ImaGenome build

GOLD_HEADER = ["image_id", "x1", "y1", "x2", "y2", "width", "height", "bbox_name", "annot_id",
               "original_x1", "original_x2", "original_y1", "original_y2", "original_width",
               "original_height", "annotator", "coord224", "coord_original"]
# image_id -> (original_width, original_height): a portrait (crop 64 px off top and bottom after the
# 0.64 resize), a landscape (crop 256 px off the left at scale 1) and a square identity.
IMAGES = {"a.dcm": (800, 1000), "b.dcm": (1024, 512), "c.dcm": (512, 512)}


def gold_row(image_id, region, box, annot_id=0):
    x1, y1, x2, y2 = box
    w, h = IMAGES[image_id]
    return {"image_id": image_id, "x1": 0, "y1": 0, "x2": 1, "y2": 1, "width": 1, "height": 1,
            "bbox_name": region, "annot_id": annot_id, "original_x1": x1, "original_x2": x2,
            "original_y1": y1, "original_y2": y2, "original_width": w, "original_height": h,
            "annotator": "test", "coord224": "[0, 0, 1, 1]", "coord_original": f"[{x1}, {y1}, {x2}, {y2}]"}


def filler_box(region):
    """A plausible box in c.dcm (identity transform): left regions at the image right."""
    k = REGIONS.index(region)
    if region.startswith("left"):
        return (300 + k, 100 + 10 * k, 450 + k, 200 + 10 * k)
    if region.startswith("right"):
        return (60 + k, 100 + 10 * k, 210 + k, 200 + 10 * k)
    return (200, 220, 380, 380)


def write_gold_csv(path, rows, header=GOLD_HEADER):
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def gold_rows():
    rows = [
        # right lung, a.dcm: (100, 200, 400, 800) * 0.64 - (0, 64) = (64, 64, 256, 448):
        #   mu (160, 256), sigma (32, 64)
        gold_row("a.dcm", "right lung", (100, 200, 400, 800)),
        # right lung, b.dcm: (300, 50, 500, 450) - (256, 0) = (44, 50, 244, 450):
        #   mu (144, 250), sigma (200/6, 400/6)
        gold_row("b.dcm", "right lung", (300, 50, 500, 450)),
        # left CP angle, a.dcm: (600, 700, 700, 800) -> (384, 384, 448, 448):
        #   mu (416, 416), sigma (64/6, 64/6)
        gold_row("a.dcm", "left costophrenic angle", (600, 700, 700, 800)),
        # left CP angle, c.dcm: identity: mu (416, 410), sigma (12, 10)
        gold_row("c.dcm", "left costophrenic angle", (380, 380, 452, 440)),
        gold_row("c.dcm", "trachea", (240, 0, 270, 150)),                      # not a LUT region: ignored
        gold_row("c.dcm", "Right Lung", ("abc", 1, 2, 3)),                     # non-numeric: skipped
        gold_row("c.dcm", "left lung", (300, 100, 300, 400)),                  # empty box: skipped
        gold_row("c.dcm", "cardiac silhouette", ("nan", 100, 200, 400)),       # non-finite: skipped
    ]
    done = ("right lung", "left costophrenic angle")
    rows += [gold_row("c.dcm", r, filler_box(r)) for r in REGIONS if r not in done]
    return rows


def test_build_lut_from_imagenome_reproduces_hand_computed_gaussians(tmp_path):
    lut = build_lut_from_imagenome(write_gold_csv(tmp_path / "gold.csv", gold_rows()))
    (right_lung,) = lut["right"]
    assert (right_lung.mu_x, right_lung.mu_y) == pytest.approx((152, 253))
    assert (right_lung.sigma_x, right_lung.sigma_y) == pytest.approx(((32 + 200 / 6) / 2, (64 + 400 / 6) / 2))
    (left_cp,) = lut["left costophrenic"]
    assert (left_cp.mu_x, left_cp.mu_y) == pytest.approx((416, 413))
    assert (left_cp.sigma_x, left_cp.sigma_y) == pytest.approx(((64 / 6 + 12) / 2, (64 / 6 + 10) / 2))
    (heart,) = lut["cardiomegaly"]
    assert (heart.mu_x, heart.mu_y, heart.sigma_x, heart.sigma_y) == pytest.approx((290, 300, 30, 160 / 6))

    # locations are assembled from regions; bilateral ones keep both sides as two components
    assert lut["pulmonary"] == (right_lung, lut["left"][0])
    assert lut["bilateral costophrenic"] == (lut["right costophrenic"][0], left_cp)
    assert lut["lingular"] == lut["left middle"]
    assert lut["left pleural"] == lut["left base"] == lut["left lower"]
    assert lut["bibasilar"] == lut["right lower"] + lut["left lower"]
    for loc in LOCATIONS:
        side, _ = split_location(loc)
        if side in ("left", "right"):
            assert (lut[loc][0].mu_x > 256) == (side == "left"), loc

    build = lut.metadata["build"]
    assert lut.metadata["approximation"] is False
    assert build["rows"] == len(gold_rows()) and build["other_regions"] == 1
    assert build["skipped"] == {"non-numeric coordinate or image size": 1,
                                "empty box (x2 <= x1 or y2 <= y1)": 1,
                                "non-finite coordinate or image size": 1}
    assert build["rows"] == build["used"] + build["other_regions"] + sum(build["skipped"].values())
    assert build["boxes_per_region"]["right lung"] == 2 and build["images"] == 3
    assert len(build["skipped_examples"]) == 3 and build["skipped_examples"][0].startswith("line 7:")


def test_build_names_missing_columns(tmp_path):
    header = [c for c in GOLD_HEADER if c != "original_height"]
    path = write_gold_csv(tmp_path / "gold.csv", gold_rows(), header=header)
    with pytest.raises(InputError, match="original_height") as err:
        build_lut_from_imagenome(path)
    assert err.value.where == str(path)


def test_build_names_regions_without_boxes(tmp_path):
    rows = [r for r in gold_rows() if r["bbox_name"] != "right apical zone"]
    with pytest.raises(InputError, match="right apical zone"):
        build_lut_from_imagenome(write_gold_csv(tmp_path / "gold.csv", rows))


def test_build_missing_file(tmp_path):
    with pytest.raises(InputError):
        build_lut_from_imagenome(tmp_path / "absent.csv")


# -------------------------------------------------------------------------------------------- the atlas


def test_draw_atlas_writes_a_png(tmp_path):
    yy, xx = np.mgrid[0:300, 0:260]
    image = (0.5 + 0.4 * np.sin(xx / 20) * np.cos(yy / 30)).astype(np.float32)  # non-square, in [0, 1]
    out = draw_atlas(Lut.default(), image, tmp_path / "atlas.png", dpi=40)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size[0] >= 600 and png.size[1] >= 350
    assert out.stat().st_size > 20_000
    assert draw_atlas(Lut.default(), None, tmp_path / "blank.png", dpi=20).exists()
    with pytest.raises(InputError):
        draw_atlas(Lut.default(), np.zeros((4, 4, 3)), tmp_path / "rgb.png")


@pytest.mark.skipif(not Path(__file__).resolve().parents[2].joinpath("shared/data/images").is_dir(),
                    reason="shared data not present")
def test_draw_atlas_over_a_real_radiograph(tmp_path):
    from cxrg.images import read_image

    image = read_image(Path(__file__).resolve().parents[2] / "shared/data/images/00000001_000.png")
    out = draw_atlas(Lut.default(), image, tmp_path / "atlas.png", dpi=30)
    assert out.stat().st_size > 10_000
