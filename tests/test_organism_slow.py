"""The paper's three claims in miniature, on the committed organism, through the `cxrg` commands.

Slow (about 45 minutes on two busy CPU cores): runs cxrg.organism.experiment.run_claims on the held-out
test set and asserts the numbers issue 13 asks for, unchanged. Claims measured not to hold on the committed
organism are strict xfails (they fail loudly once they start to pass): see docs/organism.md.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    from cxrg.organism.experiment import run_claims

    return run_claims(tmp_path_factory.mktemp("organism")).values


MEASURED_FAILING = ("does not hold on the committed organism (measured 2026-11-29, docs/organism.md): its "
                    "side words do not bind, and its default captured layers include layers that point away "
                    "from the finding")


@pytest.mark.xfail(strict=True, reason=MEASURED_FAILING)
def test_zero_shot_beats_the_prior_with_laterality(claims):
    frozen, prior = claims["zero_shot"]["ldm-frozen"], claims["zero_shot"]["prior"]
    assert frozen["cnr"] > prior["cnr"]
    assert frozen["miou"] > prior["miou"]
    assert claims["zero_shot"]["laterality"] >= 0.90


def test_the_layer_and_window_chosen_on_val_ground_on_test(claims):
    """Measured: CNR 1.718 against the prior's 1.142, laterality 98.5 % (its mIoU, 0.313, stays below the
    prior's 0.378, so that is not asserted)."""
    chosen, prior = claims["val_chosen"], claims["zero_shot"]["prior"]
    assert chosen["cnr_low"] > prior["cnr_high"]
    assert chosen["laterality"] >= 0.90


@pytest.mark.parametrize("how", [
    pytest.param("swapped", marks=pytest.mark.xfail(strict=True, reason="laterality 58.8 % after tuning: "
                                                    + MEASURED_FAILING)),
    pytest.param("reinit", marks=pytest.mark.xfail(strict=True, reason="laterality 63.2 % after tuning: "
                                                   + MEASURED_FAILING))])
def test_tuning_restores_damaged_anatomy_rows(claims, how):
    reference = claims["zero_shot"]["ldm-frozen"]["cnr"]
    tuned = claims["tuning"][how]["ldm"]
    assert tuned["laterality"] >= 0.90
    assert tuned["cnr"] >= 0.80 * reference


@pytest.mark.xfail(strict=True, reason=MEASURED_FAILING)
def test_tuning_improves_over_frozen(claims):
    unperturbed = claims["tuning"]["unperturbed"]
    assert unperturbed["ldm"]["cnr"] > unperturbed["ldm-frozen"]["cnr"]
    assert unperturbed["ldm"]["miou"] > unperturbed["ldm-frozen"]["miou"]


def test_grounded_classification_beats_chance(claims):
    rows = {r["strategy"]: r for r in claims["classify"]}
    assert "none" in rows and len(rows) > 1
    best = max(rows.values(), key=lambda r: r["value"])
    assert best["ci_low"] > 0.5
