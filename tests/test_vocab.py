"""Vocabulary, prompt grammar and the bilateral merge."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxrg.errors import InputError
from cxrg.vocab import (
    LOCATIONS,
    PATHOLOGIES,
    PATHOLOGY_TEXT,
    SYNONYMS,
    Prompt,
    canonical,
    canonical_pathology,
    format_prompt,
    merge_bilateral,
    split_location,
    tidy_locations,
)


def test_the_27_locations_and_8_pathologies():
    assert len(LOCATIONS) == 27 == len(set(LOCATIONS))
    assert LOCATIONS[:8] == ("left", "left apical", "left upper", "left middle", "left lower",
                             "left costophrenic", "left pleural", "left base")
    assert LOCATIONS[-4:] == ("bibasilar", "lingular", "cardiomegaly", "pulmonary")
    assert "bilateral base" not in LOCATIONS
    assert not any(" and " in f" {loc} " for loc in LOCATIONS)
    assert PATHOLOGIES == ("Pneumonia", "Pneumothorax", "Pleural Effusion", "Lung Opacity", "Atelectasis",
                           "Cardiomegaly", "Consolidation", "Edema")
    assert PATHOLOGY_TEXT["Pleural Effusion"] == "pleural effusion"
    assert split_location("bibasilar") == ("bilateral", "base")
    assert split_location("right") == ("right", "")
    assert split_location("lingular") == (None, "lingular")


def test_synonyms_cover_the_curation_forms():
    assert set(SYNONYMS) == set(PATHOLOGIES)
    for words in ("pneumonias", "opacities", "consolidations", "infiltrates"):
        assert words in SYNONYMS["Pneumonia"]
    assert {"effusion", "effusions"} <= set(SYNONYMS["Pleural Effusion"])
    assert "pneumothoraces" in SYNONYMS["Pneumothorax"]
    assert {"atelectases", "atelectatic"} <= set(SYNONYMS["Atelectasis"])
    assert {"enlarged heart", "enlarged cardiac silhouette"} <= set(SYNONYMS["Cardiomegaly"])
    assert {"edema", "oedema", "vascular congestion"} <= set(SYNONYMS["Edema"])
    assert all(w == w.lower() for words in SYNONYMS.values() for w in words)


@pytest.mark.parametrize("name, canonical", [
    ("Pleural Effusion", "Pleural Effusion"),    # CheXpert, MS-CXR
    ("Pleural effusion", "Pleural Effusion"),    # VinDr-CXR
    ("pleural_effusion", "Pleural Effusion"),
    ("Effusion", "Pleural Effusion"),            # NIH ChestX-ray14
    ("Lung Opacity", "Lung Opacity"),
    ("lung-opacity", "Lung Opacity"),
    ("EDEMA", "Edema"),
    ("oedema", "Edema"),
    ("  cardiomegaly ", "Cardiomegaly"),
])
def test_canonical_pathology(name, canonical):
    assert canonical_pathology(name) == canonical


def test_canonical_pathology_unknown_lists_the_valid_ones():
    with pytest.raises(InputError) as err:
        canonical_pathology("Nodule/Mass")
    assert all(name in str(err.value) for name in PATHOLOGIES)


@pytest.mark.parametrize("text, locations, pathology", [
    ("left pleural effusion", ("left",), "Pleural Effusion"),
    ("left pleural pleural effusion", ("left pleural",), "Pleural Effusion"),
    ("bilateral pleural pleural effusion", ("bilateral pleural",), "Pleural Effusion"),
    ("bibasilar atelectasis", ("bibasilar",), "Atelectasis"),
    ("right lower and left apical lung opacity", ("right lower", "left apical"), "Lung Opacity"),
    ("cardiomegaly", ("cardiomegaly",), "Cardiomegaly"),
    ("cardiomegaly cardiomegaly", ("cardiomegaly",), "Cardiomegaly"),  # old manifests
    ("left lower cardiomegaly", ("left lower",), "Cardiomegaly"),
    ("Left  Lower   PNEUMONIA", ("left lower",), "Pneumonia"),
])
def test_parse_examples(text, locations, pathology):
    assert Prompt.parse(text) == Prompt(locations, pathology)


def test_format_joins_with_and_and_keeps_order():
    p = Prompt(("right apical", "left lower", "lingular"), "Pneumothorax")
    assert p.format() == "right apical and left lower and lingular pneumothorax"
    assert str(Prompt(("bibasilar",), "edema")) == "bibasilar edema"
    assert Prompt(("bibasilar",), "edema").pathology == "Edema"


prompts = st.builds(
    Prompt,
    st.lists(st.sampled_from(LOCATIONS), min_size=0, max_size=3, unique=True).map(tuple),
    st.sampled_from(PATHOLOGIES),
)


@settings(max_examples=300, deadline=None)
@given(prompts)
def test_parse_is_the_exact_inverse_of_format(prompt):
    text = prompt.format()
    assert Prompt.parse(text) == prompt
    assert Prompt.parse(text).format() == text
    assert Prompt.parse(text.upper()) == prompt


def test_parse_unknown_location_lists_the_valid_locations():
    with pytest.raises(InputError) as err:
        Prompt.parse("left lowr pleural effusion")
    message = str(err.value)
    assert "'left lowr'" in message
    assert all(loc in message for loc in LOCATIONS)
    with pytest.raises(InputError, match="bibasilar"):
        Prompt.parse("bilateral base pneumonia")


def test_parse_without_pathology_lists_the_pathologies():
    with pytest.raises(InputError) as err:
        Prompt.parse("left lower nodule")
    assert all(text in str(err.value) for text in PATHOLOGY_TEXT.values())


def test_prompt_rejects_bad_fields():
    with pytest.raises(InputError, match="repeated"):
        Prompt(("left", "left"), "Edema")
    with pytest.raises(InputError, match="valid locations"):
        Prompt(("left lung",), "Edema")
    with pytest.raises(InputError, match="valid pathologies"):
        Prompt(("left",), "Nodule")


@pytest.mark.parametrize("given_locations, merged", [
    (["left lower", "right lower"], ("bilateral lower",)),
    (["right base", "lingular", "left base"], ("bibasilar", "lingular")),
    (["left", "right"], ("bilateral",)),
    (["left apical", "right lower"], ("left apical", "right lower")),
    (["left upper", "bilateral upper", "right upper"], ("bilateral upper",)),
    (["left upper", "left upper"], ("left upper",)),
    (["pulmonary", "cardiomegaly"], ("pulmonary", "cardiomegaly")),
    ([], ()),
])
def test_merge_bilateral(given_locations, merged):
    assert merge_bilateral(given_locations) == merged


def test_merge_bilateral_rejects_unknown_locations():
    with pytest.raises(InputError, match="valid locations"):
        merge_bilateral(["left lower lobe"])


def test_cardiomegaly_is_written_once_and_located_at_the_heart():
    assert Prompt((), "Cardiomegaly") == Prompt(("cardiomegaly",), "Cardiomegaly")
    assert Prompt(("cardiomegaly",), "Cardiomegaly").format() == "cardiomegaly"
    assert Prompt.parse("cardiomegaly cardiomegaly").format() == "cardiomegaly"
    assert Prompt(("cardiomegaly",), "Edema").format() == "cardiomegaly edema"


@pytest.mark.parametrize("locations, pathology, prompt", [
    (("left",), "Pleural Effusion", "left pleural pleural effusion"),
    (("left", "right"), "Pleural Effusion", "bilateral pleural pleural effusion"),
    (("left lower", "left"), "Pleural Effusion", "left lower pleural effusion"),
    (("right",), "Pneumothorax", "right pneumothorax"),
    ((), "Cardiomegaly", "cardiomegaly"),
    (("left lower",), "Cardiomegaly", "cardiomegaly"),
    (("bilateral",), "Edema", "pulmonary edema"),
    (("bilateral pleural",), "Edema", "pulmonary edema"),
    (("pulmonary", "cardiomegaly"), "Pneumonia", "pneumonia"),
    (("right pleural",), "Lung Opacity", "right lung opacity"),
    (("left", "lingular"), "Atelectasis", "lingular atelectasis"),
    (("left lower", "right lower"), "Consolidation", "bilateral lower consolidation"),
    ((), "Pneumothorax", "pneumothorax"),
])
def test_format_prompt_writes_the_canonical_prompt(locations, pathology, prompt):
    assert format_prompt(locations, pathology) == prompt


def test_canonical_is_idempotent_on_every_one_and_two_location_prompt():
    for pathology in PATHOLOGIES:
        for first in ("", *LOCATIONS):
            for second in ("", *LOCATIONS):
                locations = tuple(dict.fromkeys(loc for loc in (first, second) if loc))
                once = canonical(Prompt(locations, pathology))
                assert canonical(once) == once, (locations, pathology)
                assert Prompt.parse(once.format()) == once


def test_tidy_locations():
    assert tidy_locations(["left", "left lower", "right"]) == ("left lower", "right")
    assert tidy_locations(["left", "bilateral upper"]) == ("bilateral upper",)
    assert tidy_locations(["left pleural", "right pleural"]) == ("bilateral pleural",)


def test_canonical_reaches_a_fixpoint_when_a_merge_enables_another_rule():
    from cxrg.vocab import canonical

    once = canonical(Prompt(("right apical", "left apical", "bilateral"), "Pneumonia"))
    assert canonical(once) == once and once.format() == canonical(Prompt.parse(once.format())).format()
