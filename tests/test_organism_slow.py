"""The paper's claims in miniature, on the committed organism, through the `cxrg` commands.

Slow (about 35 minutes on two busy CPU cores): runs cxrg.organism.experiment.run_claims on the held-out
test set with the settings of issue 23 (timestep_spacing "trailing", the tuning loss chosen on val,
1,000 bootstrap resamples) and asserts the issue's thresholds. Claims measured not to hold on the committed
organism are strict xfails (they fail loudly once they start to pass): see docs/organism.md, "Third
session".
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    from cxrg.organism.experiment import CHOSEN_TUNE_FLAGS, LDM_TABLE, run_claims

    return run_claims(tmp_path_factory.mktemp("organism"), resamples=1000, ldm_table=LDM_TABLE,
                      tune_extra=CHOSEN_TUNE_FLAGS, perturbations=("unperturbed", "swapped"),
                      with_val_chosen=False).values


MEASURED_FAILING = ("does not hold on the committed organism (measured 2026-12-06, docs/organism.md): "
                    "tuning the rows cannot make its maps side-selective (the row oracle fails)")


@pytest.mark.xfail(strict=True, reason="CNR 0.968 against the prior's 1.269: " + MEASURED_FAILING)
def test_zero_shot_beats_the_prior_with_laterality(claims):
    frozen, prior = claims["zero_shot"]["ldm-frozen"], claims["zero_shot"]["prior"]
    assert frozen["cnr"] > prior["cnr"]
    assert frozen["miou"] > prior["miou"]
    assert claims["zero_shot"]["laterality"] >= 0.90


def test_tuning_beats_frozen_in_cnr_with_cis_apart(claims):
    """Measured: tuned 1.183 [1.090, 1.270] against frozen 0.968 [0.865, 1.063]; laterality 75.0 % against
    61.8 %."""
    unperturbed = claims["tuning"]["unperturbed"]
    assert unperturbed["ldm"]["cnr_low"] > unperturbed["ldm-frozen"]["cnr_high"]
    assert unperturbed["ldm"]["laterality"] > unperturbed["ldm-frozen"]["laterality"]


@pytest.mark.xfail(strict=True, reason="+0.215 CNR, -0.020 mIoU, laterality 75.0 %: " + MEASURED_FAILING)
def test_tuning_reaches_the_issues_thresholds(claims):
    unperturbed = claims["tuning"]["unperturbed"]
    tuned, frozen = unperturbed["ldm"], unperturbed["ldm-frozen"]
    assert tuned["cnr"] - frozen["cnr"] >= 0.3 and tuned["miou"] - frozen["miou"] >= 0.05
    assert tuned["laterality"] >= 0.90


@pytest.mark.xfail(strict=True, reason="tuned CNR 1.183 against the prior's 1.269: " + MEASURED_FAILING)
def test_tuned_beats_the_prior(claims):
    assert claims["tuning"]["unperturbed"]["ldm"]["cnr"] > claims["zero_shot"]["prior"]["cnr"]


def test_tuning_from_swapped_rows_restores_cnr(claims):
    """Measured: frozen 0.721 -> tuned 1.125, 95 % of the tuned-from-unperturbed 1.183."""
    tuned = claims["tuning"]["swapped"]["ldm"]
    assert tuned["cnr"] >= 0.90 * claims["tuning"]["unperturbed"]["ldm"]["cnr"]


@pytest.mark.xfail(strict=True, reason="laterality 58.8 % after tuning from swapped rows: "
                   + MEASURED_FAILING)
def test_tuning_from_swapped_rows_restores_laterality(claims):
    assert claims["tuning"]["swapped"]["ldm"]["laterality"] >= 0.90


def test_grounded_classification_beats_chance(claims):
    rows = {r["strategy"]: r for r in claims["classify"]}
    assert "none" in rows and len(rows) > 1
    best = max(rows.values(), key=lambda r: r["value"])
    assert best["ci_low"] > 0.5
