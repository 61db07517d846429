"""Report text: sections, sentences, clauses and word tokens.

Radiology reports are written in a small number of layouts: MIMIC-CXR's "FINDINGS: ... IMPRESSION: ..."
with upper-case headers, numbered impressions ("1. ... 2. ..."), and de-identification blanks ("___" in
MIMIC-CXR, "XXXX" in the IU collection). Everything downstream works on lower-case word tokens with their
character offsets, so that a match can always be shown in the original sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A header is an upper-case phrase ending in a colon at the start of a line: "FINDINGS:", "IMPRESSION:".
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/,()-]{1,60}?)[ \t]*:", re.MULTILINE)

# Header spellings (upper case, single spaces) -> the section they start.
SECTION_ALIASES: dict[str, str] = {
    "FINDINGS": "findings",
    "FINDING": "findings",
    "FINDINGS AND IMPRESSION": "impression",
    "FINDINGS/IMPRESSION": "impression",
    "IMPRESSION": "impression",
    "IMPRESSIONS": "impression",
    "CONCLUSION": "impression",
    "CONCLUSIONS": "impression",
    "SUMMARY": "impression",
}

DEFAULT_SECTIONS: tuple[str, ...] = ("findings", "impression")


def sections(text: str) -> dict[str, str]:
    """The report's sections by name ("findings", "impression", or the lower-case header), in order.

    Text before the first header is "preamble". A section that appears twice is concatenated.
    """
    found: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    starts = [(m.start(), m.end(), " ".join(m.group(1).split())) for m in matches]
    if not starts or starts[0][0] > 0:
        first = starts[0][0] if starts else len(text)
        if text[:first].strip():
            found["preamble"] = text[:first].strip()
    for k, (_, end, header) in enumerate(starts):
        stop = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        name = SECTION_ALIASES.get(header, header.lower())
        body = text[end:stop].strip()
        if body:
            found[name] = (found[name] + "\n" + body) if name in found else body
    return found


_LIST_NUMBER = re.compile(r"(?:(?<=\s)|^)\(?\d{1,2}[.)](?=\s+[A-Za-z])")
# A sentence ends at . ! ? followed by space, or at "." glued to a capitalised word ("apex.There").
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z]{2}\.)(?=[A-Z][a-z])|\n\s*\n")
_ABBREVIATIONS = ("approx.", "dr.", "e.g.", "i.e.", "vs.", "no.", "mr.", "ms.", "st.", "fig.", "cf.")


def sentences(text: str) -> list[str]:
    """Split section text into sentences; list numbers ("1.", "2)") are removed, blanks dropped."""
    text = _LIST_NUMBER.sub(" ", text)
    pieces = _SENTENCE_END.split(text)
    out: list[str] = []
    carry = ""
    for piece in pieces:
        piece = " ".join(piece.split())
        if not piece:
            continue
        piece = carry + " " + piece if carry else piece
        if piece.lower().endswith(_ABBREVIATIONS):
            carry = piece
            continue
        carry = ""
        out.append(piece)
    if carry:
        out.append(carry)
    return [s for s in out if any(ch.isalpha() for ch in s)]


@dataclass(frozen=True)
class Token:
    text: str
    """Lower-case word, or a single punctuation character."""
    start: int
    end: int


_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")  # "1.7" is one token

# Phrases rewritten before tokenising (same length, so offsets still index the original sentence).
_REWRITES = ((re.compile(r"\bbehind the heart\b"), "retrocardiac    "),)


def normalise(sentence: str) -> str:
    """Lower case with the same length as the input, so token offsets index the original sentence."""
    low = sentence.lower()
    for pattern, repl in _REWRITES:
        low = pattern.sub(repl, low)
    return low


def tokens(sentence: str) -> list[Token]:
    """Word and punctuation tokens of a sentence, lower case, with offsets into the sentence."""
    return [Token(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(normalise(sentence))]


# Clause boundaries: negation, location and attachment never cross them.
CLAUSE_BREAK_WORDS = frozenset({"but", "however", "although", "though", "whereas", "while", "yet",
                                "except", "nevertheless"})
CLAUSE_BREAK_PUNCT = frozenset({";", ":", "."})


def clause_ids(toks: list[Token]) -> list[int]:
    """Clause number of each token: a new clause starts at ';', ':', '.', ', and', and words like 'but'."""
    ids: list[int] = []
    clause = 0
    for k, tok in enumerate(toks):
        if tok.text in CLAUSE_BREAK_PUNCT or tok.text in CLAUSE_BREAK_WORDS:
            clause += 1
        elif tok.text == "and" and k > 0 and toks[k - 1].text == ",":
            clause += 1
        ids.append(clause)
    return ids
