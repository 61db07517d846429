"""cxrg.phrases: one reading of a phrase, the labelled phrase set, and one prompt from every producer."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrg.anatomy.lut import Lut
from cxrg.bench.vindr import prompt_for_boxes
from cxrg.curation.extractors import RulesExtractor
from cxrg.curation.mscxr import MS_CXR_COLUMNS, to_ms_cxr_loc
from cxrg.curation.pipeline import Curator
from cxrg.curation.reports import read_generic
from cxrg.errors import InputError
from cxrg.phrases import closest_prompts, normalise, vocabulary_prompts
from cxrg.tuning.phantoms import write_phantom_set
from cxrg.vocab import LOCATIONS, PATHOLOGIES, STYLES, Prompt, canonical, format_prompt


def gold_rows() -> list[dict[str, str]]:
    text = resources.files("cxrg.curation").joinpath("phrases_gold.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def predict(phrase: str) -> str:
    try:
        return normalise(phrase).prompt
    except InputError:
        return "unparseable"


def score(rows: list[dict[str, str]]) -> dict[str, float]:
    """Phrase level: a returned prompt is right only if it equals the expected one.
    precision = right prompts / prompts returned; recall = right prompts / phrases that have a prompt;
    rejection = unparseable phrases refused / unparseable phrases."""
    returned = right = expected = refused = unreadable = 0
    for row in rows:
        got = predict(row["phrase"])
        if row["expected"] == "unparseable":
            unreadable += 1
            refused += got == "unparseable"
        else:
            expected += 1
            right += got == row["expected"]
        returned += got != "unparseable"
    return {"precision": right / returned, "recall": right / expected, "rejection": refused / unreadable,
            "n": len(rows), "with_prompt": expected, "unparseable": unreadable}


def test_phrase_set_precision_and_recall():
    rows = gold_rows()
    assert len(rows) >= 300
    assert {row["kind"] for row in rows} == {"label_text", "report", "prompt", "hostile"}
    assert len({row["phrase"] for row in rows}) == len(rows)  # no phrase twice
    for row in rows:  # expectations are canonical prompts or "unparseable" with a reason
        if row["expected"] == "unparseable":
            assert row["reason"], row
        else:
            assert canonical(Prompt.parse(row["expected"])).format() == row["expected"], row
    figures = score(rows)
    assert figures["precision"] >= 0.99, figures
    assert figures["recall"] >= 0.97, figures
    # no silent-wrong case: a phrase that must be refused is never read as a prompt
    silent = [row["phrase"] for row in rows if row["expected"] == "unparseable" and predict(row["phrase"])
              != "unparseable"]
    assert not silent, silent
    assert figures["rejection"] == 1.0, figures


@pytest.mark.parametrize("phrase, prompt", [
    # the radiologist's reading, docs/curation.md "Reading a phrase"
    ("left pleural effusion", "left pleural pleural effusion"),
    ("Small left effusion", "left pleural pleural effusion"),
    ("small left pleural effusion", "left pleural pleural effusion"),
    ("bilateral effusions", "bilateral pleural pleural effusion"),
    ("right pneumothorax", "right pneumothorax"),
    ("cardiomegaly", "cardiomegaly"),
    ("cardiomegaly cardiomegaly", "cardiomegaly"),
    ("The heart is enlarged", "cardiomegaly"),
    ("pulmonary edema", "pulmonary edema"),
    ("bilateral edema", "pulmonary edema"),
    ("lingular atelectasis", "lingular atelectasis"),
    ("retrocardiac opacity", "left lower lung opacity"),
    ("left lower lobe pneumonia", "left lower pneumonia"),
    ("Left upper lobe consolidation", "left upper consolidation"),
    ("RLL pneumonia", "right lower pneumonia"),
    ("Right and left lower lobe opacities", "bilateral lower lung opacity"),
    ("left basilar opacity, likely atelectasis", "left base atelectasis"),
    ("consolidative opacity in the left lower lobe", "left lower consolidation"),
    ("right pleural lung opacity", "right lung opacity"),
    ("  Left   LOWER pneumonia ", "left lower pneumonia"),
])
def test_readings(phrase, prompt):
    result = normalise(phrase)
    assert result.phrase == phrase
    assert result.prompt == prompt
    assert result.structured == Prompt.parse(prompt)
    assert result.structured.format() == prompt


def test_cardiomegaly_is_one_prompt_located_at_the_heart():
    for text in ("cardiomegaly", "cardiomegaly cardiomegaly", "Mild cardiomegaly"):
        assert normalise(text).structured == Prompt(("cardiomegaly",), "Cardiomegaly")
    assert Prompt((), "Cardiomegaly") == Prompt(("cardiomegaly",), "Cardiomegaly")
    assert Prompt((), "Cardiomegaly").format() == "cardiomegaly"


def test_exact_turns_reading_off():
    assert normalise("left pleural effusion", exact=True).structured == Prompt(("left",), "Pleural Effusion")
    assert normalise("left pleural effusion", exact=True).prompt == "left pleural effusion"
    with pytest.raises(InputError, match="closest vocabulary prompts: 'left lower pneumonia'"):
        normalise("left lower lobe pneumonia", exact=True)


def test_pathology_hint_gives_the_locations_of_a_phrase_that_names_the_finding_otherwise():
    assert normalise("right lower lobe airspace process", pathology="Pneumonia").prompt == \
        "right lower pneumonia"
    assert normalise("right lower lobe opacity", pathology="pneumonia").prompt == "right lower pneumonia"


@pytest.mark.parametrize("phrase, why", [
    ("left lower lobe nodule", "names none of the 8 findings"),
    ("No pneumothorax", "negates"),
    ("The left pneumothorax has resolved", "resolved"),
    ("atelectasis versus pneumonia", "alternatives"),
    ("cardiomegaly with pulmonary vascular congestion", "2 findings"),
    ("", "empty phrase"),
])
def test_unreadable_phrases_get_one_line_with_the_closest_prompts(phrase, why):
    with pytest.raises(InputError) as err:
        normalise(phrase)
    message = err.value.one_line()
    assert why in message and "\n" not in message
    if phrase:
        assert "closest vocabulary prompts:" in message


def test_closest_prompts_are_vocabulary_prompts():
    assert closest_prompts("left lowr pneumonia")[0] == "left lower pneumonia"
    assert all(canonical(Prompt.parse(p)).format() == p for p in vocabulary_prompts())
    assert "cardiomegaly" in vocabulary_prompts() and "cardiomegaly cardiomegaly" not in vocabulary_prompts()


structured = st.builds(Prompt, st.lists(st.sampled_from(LOCATIONS), max_size=3, unique=True).map(tuple),
                       st.sampled_from(PATHOLOGIES))


@settings(max_examples=300, deadline=None)
@given(structured)
def test_normalise_is_idempotent_over_the_vocabulary(prompt):
    first = normalise(prompt.format())
    assert normalise(first.prompt).prompt == first.prompt
    assert first.structured == canonical(prompt)
    assert canonical(canonical(prompt)) == canonical(prompt)
    if canonical(prompt) == prompt:  # a canonical prompt stays itself
        assert first.prompt == prompt.format()


@pytest.mark.parametrize("row", gold_rows()[::7], ids=lambda row: row["phrase"])
def test_normalise_is_idempotent_on_free_text(row):
    if row["expected"] != "unparseable":
        first = normalise(row["phrase"]).prompt
        assert normalise(first).prompt == first


# --- one formatting function for every producer ----------------------------------------------------------

def _box_at(lut: Lut, location: str) -> list[float]:
    g = lut[location][0]
    return [g.mu_x - 3 * g.sigma_x, g.mu_y - 3 * g.sigma_y, g.mu_x + 3 * g.sigma_x, g.mu_y + 3 * g.sigma_y]


FINDINGS = [  # (pathology, location the producers are given, report sentence / MS-CXR phrase)
    ("Cardiomegaly", "cardiomegaly", "Moderate cardiomegaly."),
    ("Pleural Effusion", "left", "Small left effusion."),
    ("Lung Opacity", "left lower", "Opacity in the left lower lobe."),
    ("Pneumothorax", "right apical", "Small right apical pneumothorax."),
]


def test_every_producer_writes_the_same_prompt(tmp_path: Path):
    lut = Lut.default()
    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label"])
        for k, (pathology, _, sentence) in enumerate(FINDINGS):
            writer.writerow([f"r{k}", sentence, pathology])
    _, stream = read_generic(reports)
    curated = {s.pathology: s.prompt for s in Curator(RulesExtractor()).run(stream).samples}

    ms_cxr = tmp_path / "ms_cxr.csv"
    with ms_cxr.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MS_CXR_COLUMNS)
        writer.writeheader()
        for k, (pathology, _, sentence) in enumerate(FINDINGS):
            writer.writerow({"dicom_id": f"d{k}", "category_name": pathology, "path": f"d{k}.png",
                             "label_text": sentence.rstrip("."), "x": 10, "y": 10, "w": 20, "h": 20,
                             "image_width": 512,
                             "image_height": 512})
    loc = {p.category: p.prompt for p in to_ms_cxr_loc(ms_cxr, RulesExtractor()).kept}

    for pathology, location, sentence in FINDINGS:
        vindr = prompt_for_boxes(pathology, np.array([_box_at(lut, location)]), 512, 512, lut)
        manifest = write_phantom_set(tmp_path / f"phantoms-{pathology}", 1, lut, pathology=pathology)
        with manifest.open(newline="") as handle:
            phantom_row = next(csv.DictReader(handle))
        phantom = format_prompt(phantom_row["locations"].split(";"), pathology)
        assert phantom_row["prompt"] == phantom
        expected = format_prompt((location,), pathology)
        assert curated[pathology] == loc[pathology] == vindr == expected, pathology
        assert normalise(sentence).prompt == expected
    assert curated["Cardiomegaly"] == "cardiomegaly"
    assert curated["Pleural Effusion"] == "left pleural pleural effusion"


# --- prompt styles: "cxrg" (default) and "paper" (docs/curation.md, "Prompt styles") ---------------------

@pytest.mark.parametrize("phrase, cxrg, paper", [
    # a side-only effusion: cxrg puts it in that side's pleural space; the paper's prompt keeps the side
    ("left effusion", "left pleural pleural effusion", "left pleural effusion"),
    ("left pleural effusion", "left pleural pleural effusion", "left pleural effusion"),
    ("Small right pleural effusion", "right pleural pleural effusion", "right pleural effusion"),
    ("bilateral effusions", "bilateral pleural pleural effusion", "bilateral pleural effusion"),
    # Edema: the paper assigns exactly one location
    ("edema at the lung bases", "bibasilar edema", "pulmonary edema"),
    ("edema", "edema", "pulmonary edema"),
    ("left lower edema", "left lower edema", "pulmonary edema"),
    # the same in both styles
    ("effusion in the left pleural space", "left pleural pleural effusion", "left pleural pleural effusion"),
    ("blunting of the left costophrenic angle", "left costophrenic pleural effusion",
     "left costophrenic pleural effusion"),
    ("right pneumothorax", "right pneumothorax", "right pneumothorax"),
    ("pulmonary edema", "pulmonary edema", "pulmonary edema"),
    ("cardiomegaly", "cardiomegaly", "cardiomegaly"),
    ("right pleural lung opacity", "right lung opacity", "right lung opacity"),
])
def test_the_two_styles(phrase, cxrg, paper):
    assert normalise(phrase).prompt == cxrg  # "cxrg" is the default
    assert normalise(phrase, style="cxrg").prompt == cxrg
    reading = normalise(phrase, style="paper")
    assert reading.prompt == paper and reading.style == "paper"
    assert normalise(paper, style="paper").prompt == paper  # a paper prompt is itself in the paper style


def test_unknown_style_is_one_line():
    with pytest.raises(InputError, match="unknown prompt style 'radgraph'"):
        normalise("left effusion", style="radgraph")
    with pytest.raises(InputError, match="unknown prompt style"):
        canonical(Prompt(("left",), "Edema"), style="Paper")
    assert STYLES == ("cxrg", "paper")


@settings(max_examples=400, deadline=None)
@given(structured)
def test_styles_differ_exactly_where_documented(prompt):
    cxrg, paper = canonical(prompt, "cxrg"), canonical(prompt, "paper")
    assert canonical(paper, "paper") == paper  # idempotent
    if prompt.pathology == "Edema":
        assert paper == Prompt(("pulmonary",), "Edema")
    elif prompt.pathology == "Pleural Effusion":
        # the only difference: a side-only location of the paper is that side's pleural space in cxrg
        assert canonical(paper, "cxrg") == cxrg
        sides_only = [loc for loc in paper.locations if loc in ("left", "right", "bilateral")]
        assert (paper != cxrg) == bool(sides_only)
    else:
        assert paper == cxrg
    assert format_prompt(prompt.locations, prompt.pathology, style="paper") == paper.format()


def test_styles_on_the_phrase_set_differ_only_for_effusion_and_edema():
    differ = set()
    for row in gold_rows():
        try:
            cxrg, paper = normalise(row["phrase"]), normalise(row["phrase"], style="paper")
        except InputError:
            continue
        assert cxrg.structured.pathology == paper.structured.pathology
        if cxrg.prompt != paper.prompt:
            differ.add(cxrg.structured.pathology)
    assert differ == {"Pleural Effusion", "Edema"}
