"""Curation building blocks: sections and sentences, the anatomy parser, negation, the location rules,
and the rules extractor's precision and recall on the labelled sentence set."""

from __future__ import annotations

from collections import Counter

import pytest

from cxrg.curation.anatomy import combine, parse_phrase, resolve
from cxrg.curation.extractors import RulesExtractor, make_extractor
from cxrg.curation.goldset import GOLD, score, score_extractor
from cxrg.curation.pipeline import curate_sentence
from cxrg.curation.rules import analyse, describe, locate
from cxrg.curation.text import sections, sentences, tokens
from cxrg.errors import UsageError
from cxrg.vocab import LOCATIONS, PATHOLOGIES, Prompt

MIMIC_REPORT = (
    "                                 FINAL REPORT\n"
    " EXAMINATION:  CHEST (PA AND LAT)\n\n"
    " INDICATION:  ___M with cough, evaluate for pneumonia.\n\n"
    " COMPARISON:  ___\n\n"
    " FINDINGS:\n \n"
    " There is a small left pleural effusion.  Heart size is normal.  No pneumothorax.\n \n"
    " IMPRESSION:\n \n"
    " 1. Small left pleural effusion.\n"
    " 2. No pneumonia.\n"
)


def test_sections_find_findings_and_impression_and_ignore_the_rest():
    found = sections(MIMIC_REPORT)
    assert set(found) == {"preamble", "examination", "indication", "comparison", "findings", "impression"}
    assert found["findings"] == \
        "There is a small left pleural effusion.  Heart size is normal.  No pneumothorax."
    assert sentences(found["impression"]) == ["Small left pleural effusion.", "No pneumonia."]
    assert sections("FINDINGS AND IMPRESSION: Mild edema.") == {"impression": "Mild edema."}
    assert sections("no headers at all") == {"preamble": "no headers at all"}


def test_sentences_handle_glued_periods_numbers_and_abbreviations():
    text = ("There are opacities in the left lung apex.There are streaky opacities. A 1.7 cm nodule, approx. "
            "stable vs. prior. 2) Small effusion.")
    assert sentences(text) == ["There are opacities in the left lung apex.", "There are streaky opacities.",
                               "A 1.7 cm nodule, approx. stable vs. prior.", "Small effusion."]
    assert sentences("  ___  ") == []
    assert [t.text for t in tokens("L-sided 1.7 cm")] == ["l", "-", "sided", "1.7", "cm"]


@pytest.mark.parametrize("phrase, pathology, expected", [
    ("left lower lobe", "Pneumonia", ("left lower",)),
    ("both lung bases", "Atelectasis", ("bibasilar",)),
    ("base of the left lung", "Atelectasis", ("left base",)),
    ("right and left lower lobes", "Pneumonia", ("bilateral lower",)),
    ("right upper and middle lobes", "Pneumonia", ("right upper", "right middle")),
    ("lower lobes", "Atelectasis", ("bilateral lower",)),
    ("bibasilar", "Atelectasis", ("bibasilar",)),
    ("biapical", "Pneumothorax", ("bilateral apical",)),
    ("left costophrenic angle", "Pleural Effusion", ("left costophrenic",)),
    ("left pleural", "Pleural Effusion", ("left pleural",)),
    ("left pleural", "Lung Opacity", ("left",)),          # "pleural" is a zone for effusion/pneumothorax only
    ("retrocardiac", "Atelectasis", ("left lower",)),
    ("lingula", "Pneumonia", ("lingular",)),
    ("left lingular", "Pneumonia", ("lingular",)),
    ("heart", "Cardiomegaly", ("cardiomegaly",)),
    ("cardiac", "Pneumonia", ()),
    ("pulmonary", "Edema", ("pulmonary",)),
    ("both lungs", "Edema", ("pulmonary",)),
    ("both lungs", "Lung Opacity", ("bilateral",)),
    ("apical", "Pneumothorax", ()),                      # no side: no location
    ("upper abdomen", "Pneumonia", ()),                  # "upper" needs a lung word or a side
    ("both right middle lobe and lingula", "Lung Opacity", ("right middle", "lingular")),
])
def test_anatomy_phrases_map_to_the_27_locations(phrase, pathology, expected):
    parts = [part for group in parse_phrase(phrase) for part in group.parts()]
    assert resolve(parts, pathology) == expected
    assert all(loc in LOCATIONS for loc in expected)


def test_combine_merges_across_sentences_and_prefers_specific_locations():
    assert combine([("left lower",), ("right lower",)]) == ("bilateral lower",)
    assert combine([("left",), ("left pleural",)]) == ("left pleural",)
    assert combine([("left pleural", "right"), ("right pleural",)]) == ("bilateral pleural",)
    assert combine([("cardiomegaly",), ()]) == ("cardiomegaly",)


@pytest.mark.parametrize("pathology, sentence, verdict", [
    ("Pneumothorax", "No pneumothorax.", "negated"),
    ("Pleural Effusion", "There is no focal consolidation, pleural effusion or pneumothorax.", "negated"),
    ("Pleural Effusion", "The lungs are clear without effusion.", "negated"),
    ("Pleural Effusion", "Lungs are free of effusion.", "negated"),
    ("Pleural Effusion", "Negative for pleural effusion.", "negated"),
    ("Pleural Effusion", "No change in the small left pleural effusion.", "present"),   # pseudo-negation
    ("Pleural Effusion", "No pneumothorax is seen and a small left effusion persists.", "present"),
    ("Pleural Effusion", "No pneumothorax, but there is a small left effusion.", "present"),
    ("Pleural Effusion", "no cardiomegaly with bilateral small pleural effusions.", "present"),
    ("Pneumothorax", "Pneumothorax is not seen.", "negated"),
    ("Pneumothorax", "The left pneumothorax has resolved.", "resolved"),
    ("Pneumonia", "Left basilar pneumonia has cleared.", "resolved"),
    ("Pneumonia", "Resolution of the previously seen right lower lobe pneumonia.", "resolved"),
    ("Pneumothorax", "Left apical pneumothorax is no longer visualized.", "resolved"),
    ("Pneumonia", "Pneumonia cannot be excluded.", "uncertain"),
    ("Pneumonia", "Cannot exclude early pneumonia.", "uncertain"),
    ("Atelectasis", "Mild bibasilar atelectasis.", "present"),
])
def test_negation_resolution_and_uncertainty(pathology, sentence, verdict):
    assert analyse(sentence, pathology).verdict() == verdict


def test_other_findings_keep_their_own_locations():
    # pericardial effusion is not a pleural effusion
    assert locate("Small pericardial effusion.", "Pleural Effusion") == ("no mention", ())
    # the right belongs to the chest tube, the left to the pneumothorax
    assert locate("Right chest tube with small left apical pneumothorax.", "Pneumothorax") == \
        ("present", ("left apical",))
    lines = describe(analyse("Left lower lobe consolidation and right pleural effusion.", "Pleural Effusion"))
    assert lines == ["'consolidation' [other] <- ['left lower lobe']",
                     "'pleural effusion' [present] <- ['right pleural']"]


@pytest.mark.parametrize("sentence, pathology, expected", [
    # what RadGraph-XL is documented to miss
    ("Left pneumothorax.", "Pneumothorax", ("left",)),
    ("Right pneumothorax.", "Pneumothorax", ("right",)),
    ("Consolidation at both lung bases.", "Consolidation", ("bibasilar",)),
    ("Patchy perihilar opacities bilaterally.", "Lung Opacity", ("bilateral",)),
    ("Small pleural effusion is now present on the right.", "Pleural Effusion", ("right pleural",)),
    ("Trace pneumothorax on the left.", "Pneumothorax", ("left",)),
    ("Small pleural effusions are present bilaterally.", "Pleural Effusion", ("bilateral pleural",)),
])
def test_the_rules_catch_what_radgraph_xl_misses(sentence, pathology, expected):
    assert locate(sentence, pathology) == ("present", expected)
    assert curate_sentence(sentence, pathology, RulesExtractor()) == ("present", expected)


def test_gold_set_covers_what_the_issue_asks_for():
    assert len(GOLD) >= 150
    per = Counter(g.pathology for g in GOLD)
    assert set(per) == set(PATHOLOGIES) and min(per.values()) >= 15
    reasons = Counter(g.reason for g in GOLD if g.expected is None)
    assert reasons["negated"] >= 20 and reasons["resolved"] >= 10 and reasons["no location"] >= 10
    for g in GOLD:  # every expected prompt is a valid prompt of its own pathology
        if g.expected:
            assert Prompt.parse(g.expected).pathology == g.pathology
    text = " ".join(g.sentence.lower() for g in GOLD)
    for variant in ("pneumothoraces", "effusions", "opacities", "infiltrate", "airspace disease", "collapse",
                    "bilaterally", "on the left", "on the right", "right-sided", "bibasilar", "lingula",
                    "retrocardiac", "costophrenic", "apex", "heart is mildly enlarged",
                    "vascular congestion"):
        assert variant in text, variant


def test_rules_extractor_precision_and_recall_on_the_gold_set():
    result = score_extractor(RulesExtractor())
    print("\n".join(result.lines()))
    assert result.sentences == len(GOLD)
    assert result.precision >= 0.95
    assert result.recall >= 0.90
    assert result.tp + result.fn == sum(len(Prompt.parse(g.expected).locations) for g in GOLD if g.expected)


def test_score_counts_false_positives_on_sentences_that_should_give_nothing():
    always_left = score(lambda sentence, pathology: ("left",))
    expected = sum(len(Prompt.parse(g.expected).locations) for g in GOLD if g.expected)
    assert always_left.fn + always_left.tp == expected
    assert always_left.fp >= sum(1 for g in GOLD if g.expected is None)
    assert always_left.precision < 0.2


def test_make_extractor_falls_back_to_rules_and_rejects_unknown_names(tmp_path):
    extractor, note = make_extractor("auto", radgraph_dir=tmp_path)
    assert extractor.name == "rules"
    assert note.startswith("using the rules extractor: ")
    assert str(tmp_path) in note or "radgraph package is not installed" in note
    with pytest.raises(UsageError, match="unknown extractor"):
        make_extractor("spacy")
