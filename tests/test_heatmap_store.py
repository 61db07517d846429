"""Saved heatmaps of a bench run: reduction, round trip, and the bench command writing them."""

from __future__ import annotations

import numpy as np
from cxrg_test_support import run_cli

from cxrg.bench.heatmap_store import HeatmapStore, reduce, sample_file_name, sample_id_from_file


def test_reduce_averages_areas_and_keeps_nan_where_most_is_nan():
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    heat[:, :2] = np.nan  # left half unseen
    heat[0, 2] = np.nan  # a quarter of one reduced pixel
    small = reduce(heat, max_side=2)
    assert small.shape == (2, 2)
    assert np.isnan(small[:, 0]).all()
    assert small[0, 1] == np.float32((3 + 6 + 7) / 3)  # the NaN pixel does not count
    assert small[1, 1] == np.float32((10 + 11 + 14 + 15) / 4)


def test_reduce_keeps_small_maps_and_aspect():
    assert reduce(np.ones((10, 20), np.float32), 256).shape == (10, 20)
    assert reduce(np.ones((1000, 500), np.float32), 256).shape == (256, 128)


def test_sample_file_names_are_reversible_and_safe():
    for sample_id in ("abc:0", "a/b\\c:1", "..", "x y%z"):
        name = sample_file_name(sample_id)
        assert "/" not in name and "\\" not in name and name not in (".npz", "..npz")
        assert sample_id_from_file(name) == sample_id


def test_store_round_trip(tmp_path):
    store = HeatmapStore(tmp_path, max_side=8)
    heat = np.linspace(0, 1, 16 * 32, dtype=np.float32).reshape(16, 32)
    heat[:, :4] = np.nan
    store.save("oracle", "d1:0", heat)
    small, shape = store.load("oracle", "d1:0")
    assert shape == (16, 32) and small.shape == (4, 8) and small.dtype == np.float32
    assert np.isnan(small[:, 0]).all() and np.isfinite(small[:, 1:]).all()
    assert np.allclose(small[:, 1:], reduce(heat, 8)[:, 1:], atol=1e-3)  # float16 storage
    assert store.models() == ["oracle"] and store.sample_ids("oracle") == ["d1:0"]


def test_bench_saves_the_scored_heatmaps(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    assert run_cli("bench", "--models", "oracle,prior", "--dataset", "ms-cxr", "--annotations",
                   str(annotations), "--images", str(images), "--out", str(out), "--resamples", "100",
                   "--heatmap-size", "64") == 0
    store = HeatmapStore(out)
    assert store.models() == ["oracle", "prior"]
    ids = store.sample_ids("oracle")
    assert len(ids) > 0
    small, shape = store.load("oracle", ids[0])
    assert max(small.shape) <= 64 and np.nanmax(small) <= 1.0 and np.nanmin(small) >= 0.0


def test_bench_without_saving(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    out = tmp_path / "run"
    assert run_cli("bench", "--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(annotations),
                   "--images", str(images), "--out", str(out), "--resamples", "100",
                   "--no-save-heatmaps") == 0
    assert not (out / "heatmaps").exists()


def test_bench_writes_the_report_when_small_and_not_when_told(ms_cxr, tmp_path):
    annotations, images = ms_cxr
    base = ["bench", "--models", "oracle", "--dataset", "ms-cxr", "--annotations", str(annotations),
            "--images", str(images), "--resamples", "100"]
    assert run_cli(*base, "--out", str(tmp_path / "a")) == 0
    assert (tmp_path / "a" / "report.html").is_file()
    assert run_cli(*base, "--out", str(tmp_path / "b"), "--no-report") == 0
    assert not (tmp_path / "b" / "report.html").exists()
