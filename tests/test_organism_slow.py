"""The paper's claims in miniature, on the committed organism, through the `cxrg` commands.

Slow (about 45 minutes on two busy CPU cores): runs cxrg.organism.experiment.run_claims on the held-out
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

    work = tmp_path_factory.mktemp("organism")
    values = run_claims(work, resamples=1000, ldm_table=LDM_TABLE, tune_extra=CHOSEN_TUNE_FLAGS,
                        perturbations=("unperturbed", "swapped"), with_val_chosen=False).values
    return {**values, "work": work}


def test_the_tuning_reproduces_the_committed_embeddings_bit_for_bit(claims):
    """Every tensor and every metadata entry but `data` (a fingerprint of the manifest's image paths and
    file times, which differ between folders) equal to the committed file's."""
    import torch
    from safetensors import safe_open

    from cxrg.organism.weights import committed_weights

    made = safe_open(claims["work"] / "runs" / "tune-unperturbed" / "tuned_embeddings.safetensors", "pt")
    committed = safe_open(committed_weights() / "tuned_embeddings.safetensors", "pt")
    assert set(made.keys()) == set(committed.keys()) == {"anatomy", "rows", "token_ids"}
    for key in committed.keys():
        assert torch.equal(made.get_tensor(key), committed.get_tensor(key)), key
    ours, theirs = made.metadata(), committed.metadata()
    assert {k: v for k, v in ours.items() if k != "data"} == {k: v for k, v in theirs.items() if k != "data"}


MEASURED_FAILING = ("does not hold on the committed organism (measured 2026-12-06, docs/organism.md)")


@pytest.mark.xfail(strict=True, reason="CNR 0.968 against the prior's 1.269: " + MEASURED_FAILING)
def test_zero_shot_beats_the_prior_with_laterality(claims):
    frozen, prior = claims["zero_shot"]["ldm-frozen"], claims["zero_shot"]["prior"]
    assert frozen["cnr"] > prior["cnr"]
    assert frozen["miou"] > prior["miou"]
    assert claims["zero_shot"]["laterality"] >= 0.90


def test_tuning_beats_frozen_in_cnr_with_cis_apart(claims):
    """Measured: tuned 1.385 [1.286, 1.486] against frozen 0.968 [0.865, 1.063]; laterality 98.5 % against
    61.8 %."""
    unperturbed = claims["tuning"]["unperturbed"]
    assert unperturbed["ldm"]["cnr_low"] > unperturbed["ldm-frozen"]["cnr_high"]
    assert unperturbed["ldm"]["laterality"] > unperturbed["ldm-frozen"]["laterality"]


def test_tuning_reaches_the_issues_cnr_and_laterality_thresholds(claims):
    """Measured: +0.417 CNR, laterality 98.5 % of 68 one-sided prompts."""
    tuned, frozen = claims["tuning"]["unperturbed"]["ldm"], claims["tuning"]["unperturbed"]["ldm-frozen"]
    assert tuned["cnr"] - frozen["cnr"] >= 0.3
    assert tuned["laterality"] >= 0.90


@pytest.mark.xfail(strict=True, reason="mIoU 0.072 tuned against 0.085 frozen: " + MEASURED_FAILING)
def test_tuning_raises_miou_by_the_issues_threshold(claims):
    tuned, frozen = claims["tuning"]["unperturbed"]["ldm"], claims["tuning"]["unperturbed"]["ldm-frozen"]
    assert tuned["miou"] - frozen["miou"] >= 0.05


def test_tuned_beats_the_prior_in_cnr(claims):
    """Measured: 1.385 against the prior's 1.269 (CIs overlap)."""
    assert claims["tuning"]["unperturbed"]["ldm"]["cnr"] > claims["zero_shot"]["prior"]["cnr"]


def test_tuning_from_swapped_rows_restores_cnr_and_laterality(claims):
    """Measured: frozen 0.721 -> tuned 1.386, 100 % of the tuned-from-unperturbed 1.385; laterality 45.6 % ->
    94.1 %."""
    tuned = claims["tuning"]["swapped"]["ldm"]
    assert tuned["cnr"] >= 0.90 * claims["tuning"]["unperturbed"]["ldm"]["cnr"]
    assert tuned["laterality"] >= 0.90


def test_grounded_classification_beats_chance(claims):
    rows = {r["strategy"]: r for r in claims["classify"]["auroc"]}
    assert "none" in rows and len(rows) > 1
    best = max(rows.values(), key=lambda r: r["value"])
    assert best["ci_low"] > 0.5


def test_faint_positives_leave_room_and_every_strategy_reports_its_bins(claims):
    """Measured: plain classifier 0.843 [0.769, 0.907] on the faint set; high- minus low-mIoU bin AUROC fixed
    +0.028, location -0.194, tuned -0.321 [-0.475, -0.145] (docs/organism.md: the paper's Fig. 6 direction
    does not appear on the organism)."""
    faint = claims["classify_faint"]
    none = next(r for r in faint["auroc"] if r["strategy"] == "none")
    assert 0.6 < none["value"] < 0.95
    own = {r["scored_by"]: r for r in faint["bins"] if r["binned_by"] == r["scored_by"]}
    assert set(own) == {"fixed", "location", "tuned"}
    for row in own.values():
        assert row["per_bin"] == 30 and row["diff_low"] <= row["diff"] <= row["diff_high"]


@pytest.mark.xfail(strict=True, reason="tuned high - low mIoU bin AUROC -0.321 [-0.475, -0.145]: "
                   + MEASURED_FAILING)
def test_tuned_heatmaps_classify_better_where_they_ground_better(claims):
    tuned = next(r for r in claims["classify_faint"]["bins"] if r["binned_by"] == r["scored_by"] == "tuned")
    assert tuned["diff_low"] > 0
