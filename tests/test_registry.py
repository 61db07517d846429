"""Plugin discovery through entry points, the protocol's ground-truth guard, and the conformance kit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cxrg_test_support import make_distribution

from cxrg.models.oracle import OracleModel, box_gaussians
from cxrg.registry import GroundTruthAccessError, ModelCard, Query, discover, make_query
from cxrg.testing import check_model

GOOD_PLUGIN = '''
import numpy as np
from cxrg.registry import ModelCard

class CentreModel:
    card = ModelCard(name="centre", version="1.0", licence="MIT", description="a blob in the middle")
    def load(self, weights_dir=None, device="cpu"):
        pass
    def heatmap(self, query):
        h, w = query.image.shape
        yy, xx = np.mgrid[0:h, 0:w]
        return np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * (w / 5) ** 2)).astype(np.float32)
'''


def cxrg(*args: str, site: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    if site is not None:
        environment["PYTHONPATH"] = str(site)
        environment.pop("CXRG_LOAD_PLUGINS", None)  # discover the test's own plugin distributions
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "cxrg", *args], capture_output=True, text=True,
                          env=environment, timeout=60)


def test_builtin_oracle_is_registered_through_entry_points():
    entry = discover()["oracle"]
    assert entry.distribution == "cxrg" and entry.value == "cxrg.models.oracle:OracleModel"


def test_third_party_plugin_broken_plugin_and_list(tmp_path):
    make_distribution(tmp_path, "fakeplug", {"centre": "fakeplug_good:CentreModel",
                                             "broken": "fakeplug_broken:Model"},
                      {"fakeplug_good": GOOD_PLUGIN,
                       "fakeplug_broken": "raise ImportError('needs torchvision')\n"})
    listed = cxrg("models", "list", site=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = dict(line.split(": ", 1) for line in listed.stdout.strip().splitlines())
    assert lines["centre"] == "fakeplug 1.0"
    assert lines["broken"].startswith(
        "error: model 'broken' failed to import: ImportError: needs torchvision")
    assert lines["oracle"].startswith("cxrg ")
    checked = cxrg("models", "check", site=tmp_path)
    assert checked.returncode == 1
    assert "centre: ok" in checked.stdout and "oracle: ok" in checked.stdout
    assert "broken: error:" in checked.stdout
    info = cxrg("models", "info", "centre", site=tmp_path)
    assert info.returncode == 0 and "centre 1.0 (MIT)" in info.stdout


def test_two_plugins_with_one_name_disable_that_name_only_naming_both(tmp_path):
    make_distribution(tmp_path, "alpha", {"twin": "alpha_mod:M"}, {"alpha_mod": GOOD_PLUGIN})
    make_distribution(tmp_path, "beta", {"twin": "beta_mod:M"}, {"beta_mod": GOOD_PLUGIN})
    result = cxrg("models", "list", site=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    twin = next(line for line in result.stdout.splitlines() if line.startswith("twin:"))
    assert "error" in twin and "alpha 1.0" in twin and "beta 1.0" in twin
    assert "oracle: cxrg" in result.stdout  # every other model keeps working


def test_third_party_plugin_passes_conformance(tmp_path, monkeypatch):
    monkeypatch.delenv("CXRG_LOAD_PLUGINS")
    make_distribution(tmp_path, "fakeplug", {"centre": "fakeplug_good:CentreModel"},
                      {"fakeplug_good": GOOD_PLUGIN})
    monkeypatch.syspath_prepend(str(tmp_path))
    from fakeplug_good import CentreModel  # type: ignore[import-not-found]

    check_model(CentreModel())


def test_boxes_are_hidden_from_models_that_do_not_declare_them():
    card = ModelCard(name="x", version="1", licence="MIT", description="")
    query = make_query(card, np.zeros((4, 4), np.float32), "p", np.array([[0, 0, 1, 1]]))
    with pytest.raises(GroundTruthAccessError):
        _ = query.boxes
    oracle_query = make_query(OracleModel.card, np.zeros((4, 4), np.float32), "p", np.array([[0, 0, 1, 1]]))
    assert oracle_query.boxes.shape == (1, 4)


def test_oracle_conforms_and_matches_the_formula():
    check_model(OracleModel())
    boxes = np.array([[10.0, 20.0, 40.0, 50.0], [60.0, 5.0, 90.0, 17.0]])
    query = Query(image=np.zeros((70, 100), np.float32), prompt="p", _boxes=boxes, ground_truth_allowed=True)
    heatmap = OracleModel().heatmap(query)
    # independent: at pixel (x, y) the centre is (x+.5, y+.5); sigma = extent/3
    for x, y in [(25, 35), (0, 0), (74, 11), (50, 40)]:
        expected = max(
            np.exp(-0.5 * (((x + 0.5 - (x0 + x1) / 2) / ((x1 - x0) / 3)) ** 2
                           + ((y + 0.5 - (y0 + y1) / 2) / ((y1 - y0) / 3)) ** 2))
            for x0, y0, x1, y1 in boxes)
        assert heatmap[y, x] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert heatmap.max() <= 1.0 and box_gaussians(boxes[:1], (70, 100))[34, 24] == pytest.approx(
        np.exp(-0.5 * ((24.5 - 25) / 10) ** 2 - 0.5 * ((34.5 - 35) / 10) ** 2), rel=1e-6)


class _Peeking:
    card = ModelCard(name="peek", version="1", licence="MIT", description="reads boxes without saying so")

    def load(self, weights_dir=None, device="cpu"):
        pass

    def heatmap(self, query):
        return box_gaussians(query.boxes, query.image.shape)


class _Noisy(_Peeking):
    card = ModelCard(name="noisy", version="1", licence="MIT", description="random output")

    def heatmap(self, query):
        return np.random.default_rng().random(query.image.shape).astype(np.float32)


class _WrongShape(_Noisy):
    def heatmap(self, query):
        return np.zeros((16, 16), np.float32)


@pytest.mark.parametrize(("model", "message"), [
    (_Peeking(), "does not declare uses_ground_truth"),
    (_Noisy(), "not deterministic"),
    (_WrongShape(), "expected the image's"),
])
def test_conformance_kit_catches_broken_models(model, message):
    with pytest.raises(AssertionError, match=message):
        check_model(model)


def test_plugin_discovery_follows_cxrg_load_plugins(tmp_path):
    make_distribution(tmp_path, "fakeplug", {"centre": "fakeplug_good:CentreModel"},
                      {"fakeplug_good": GOOD_PLUGIN})
    listed = cxrg("models", "list", site=tmp_path)
    assert "centre: fakeplug" in listed.stdout
    only_own = cxrg("models", "list", site=tmp_path, env={"CXRG_LOAD_PLUGINS": ""})
    assert "centre" not in only_own.stdout and "oracle: cxrg" in only_own.stdout
    chosen = cxrg("models", "list", site=tmp_path, env={"CXRG_LOAD_PLUGINS": "fakeplug"})
    assert "centre: fakeplug" in chosen.stdout
