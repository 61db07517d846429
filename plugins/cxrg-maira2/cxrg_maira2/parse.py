"""MAIRA-2's generated text -> grounded phrases with boxes, in the format its processor defines.

A grounded answer is a run of `<obj>phrase<box><xA><yB><xC><yD></box>...</obj>` items; a phrase may have
no box (`<obj>phrase</obj>`), and an answer may be plain text with no tags at all. Coordinates are bin
indices (0..99 for 100 bins) of the square centre crop the model sees; a bin stands for its centre,
(index + 0.5) / bins, as in `convert_output_to_plaintext_or_grounded_sequence`. Malformed text (a tag
never closed, text outside the items, a coordinate outside the bins) is a MalformedOutputError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cxrg.errors import CxrgError

NUM_BINS = 100
PHRASE_START, PHRASE_END, BOX_START, BOX_END = "<obj>", "</obj>", "<box>", "</box>"
BOX_PATTERN = re.compile(r"<x(\d+)><y(\d+)><x(\d+)><y(\d+)>")


class MalformedOutputError(CxrgError):
    """MAIRA-2's answer does not follow its grounding format."""


@dataclass(frozen=True)
class GroundedPhrase:
    text: str
    boxes: tuple[tuple[float, float, float, float], ...]
    """x0, y0, x1, y1 as fractions of the square crop (bin centres); empty when the phrase has no box."""


def _between(text: str, start: str, end: str, answer: str) -> list[str]:
    """The pieces of `text` written as start...end, back to back (whitespace between them allowed)."""
    pieces = []
    text = text.strip()
    while text:
        stop = text.find(end)
        if not text.startswith(start) or stop == -1:
            raise MalformedOutputError(f"MAIRA-2 output is not a sequence of {start}...{end}: {answer!r}")
        pieces.append(text[len(start):stop])
        text = text[stop + len(end):].strip()
    return pieces


def _box(text: str, answer: str, bins: int) -> tuple[float, float, float, float]:
    match = BOX_PATTERN.search(text)  # as MAIRA-2's parser: the four coordinates, anywhere in the box
    if match is None:
        raise MalformedOutputError(f"MAIRA-2 box {text!r} is not <xA><yB><xC><yD>: {answer!r}")
    indices = [int(group) for group in match.groups()]
    if max(indices) >= bins:
        raise MalformedOutputError(f"MAIRA-2 box {text!r} has a coordinate outside 0..{bins - 1}: {answer!r}")
    x0, y0, x1, y1 = ((index + 0.5) / bins for index in indices)
    return x0, y0, x1, y1


def parse_grounded_output(answer: str, bins: int = NUM_BINS) -> list[GroundedPhrase]:
    """All phrases of an answer with their boxes; plain text is one phrase without boxes."""
    text = answer.strip()
    if not any(tag in text for tag in (PHRASE_START, PHRASE_END, BOX_START, BOX_END)):
        return [GroundedPhrase(text, ())]
    phrases = []
    for item in _between(text, PHRASE_START, PHRASE_END, answer):
        first_box = item.find(BOX_START)
        if first_box == -1:
            if BOX_END in item:
                raise MalformedOutputError(f"MAIRA-2 output closes a box it never opened: {answer!r}")
            phrases.append(GroundedPhrase(item.strip(), ()))
            continue
        pieces = _between(item[first_box:], BOX_START, BOX_END, answer)
        boxes = tuple(_box(piece, answer, bins) for piece in pieces)
        phrases.append(GroundedPhrase(item[:first_box].strip(), boxes))
    return phrases
