"""MAIRA-2's output format -> phrases and boxes (fractions of the square crop, bin centres)."""

from __future__ import annotations

import pytest
from cxrg_maira2.parse import GroundedPhrase, MalformedOutputError, parse_grounded_output


def test_grounded_and_ungrounded_phrases():
    # the example in MAIRA-2's processor docstring (its code adds half a bin: 55 -> 0.555)
    answer = "<obj>grounded phrase <box><x55><y45><x70><y56></box></obj><obj>ungrounded phrase</obj>"
    assert parse_grounded_output(answer) == [
        GroundedPhrase("grounded phrase", ((0.555, 0.455, 0.705, 0.565),)),
        GroundedPhrase("ungrounded phrase", ()),
    ]


def test_phrase_grounding_answer_with_one_and_with_two_boxes():
    assert parse_grounded_output(" <obj>Left pleural effusion<box><x2><y34><x42><y57></box></obj>") == [
        GroundedPhrase("Left pleural effusion", ((0.025, 0.345, 0.425, 0.575),))]
    two = ("<obj>Bilateral pleural effusions<box><x8><y55><x38><y80></box>"
           "<box><x62><y56><x92><y99></box></obj>")
    (phrase,) = parse_grounded_output(two)
    assert phrase.text == "Bilateral pleural effusions"
    assert phrase.boxes == ((0.085, 0.555, 0.385, 0.805), (0.625, 0.565, 0.925, 0.995))


def test_plain_text_has_no_box():
    assert parse_grounded_output("No pneumothorax.\n") == [GroundedPhrase("No pneumothorax.", ())]
    assert parse_grounded_output("<obj>Right lower lobe opacity</obj>") == [
        GroundedPhrase("Right lower lobe opacity", ())]


@pytest.mark.parametrize(("answer", "message"), [
    ("<obj>effusion<box><x1><y2><x3></box></obj>", "is not <xA><yB><xC><yD>"),
    ("<obj>effusion<box><x1><y2><x3><y100></box></obj>", "outside 0..99"),
    ("<obj>effusion<box><x1><y2><x3><y4></obj>", "not a sequence of <box>...</box>"),
    ("<obj>effusion", "not a sequence of <obj>...</obj>"),
    ("<obj>effusion</obj> and more", "not a sequence of <obj>...</obj>"),
    ("<obj>effusion</box></obj>", "closes a box it never opened"),
])
def test_malformed_answers_are_one_clear_error(answer, message):
    with pytest.raises(MalformedOutputError, match=message) as caught:
        parse_grounded_output(answer)
    assert repr(answer) in caught.value.one_line()
