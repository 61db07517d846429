"""One reading of a phrase: free text (or a prompt) -> the canonical "{location} {pathology}" prompt.

`normalise` is the single way a phrase becomes a prompt, for every command that takes one. It uses the
curation rules (`cxrg.curation`): the same synonyms, location lexicon (lobes -> zones, "retrocardiac" ->
left lower, "bibasilar", RLL/LUL ...), plurals, laterality words, negation, and the same canonical form
(`cxrg.vocab.canonical`: an effusion named by its side is in that side's pleural space, cardiomegaly is
at the heart, bilateral pairs merge). Modifiers of size, severity and time ("small", "moderate",
"patchy", "stable") are dropped. The rules are listed in docs/curation.md ("Reading a phrase").

    >>> normalise("Small left effusion").prompt
    'left pleural pleural effusion'
    >>> normalise("left lower lobe pneumonia").prompt
    'left lower pneumonia'

A prompt already in canonical form comes back unchanged; one that parses but is read otherwise by a
radiologist ("left pleural effusion": the left pleural space, not the whole left lung) gets the
radiologist's reading; `exact=True` turns all of this off and accepts only vocabulary prompts, read by
`cxrg.vocab.Prompt.parse`. A phrase that still cannot be read raises `InputError` whose message names the
closest vocabulary prompts.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache

from cxrg.curation.mentions import NEGATED, PRESENT, RESOLVED, UNCERTAIN
from cxrg.curation.rules import analyse, rule_locations
from cxrg.curation.text import normalise as lower_text
from cxrg.errors import InputError
from cxrg.vocab import LOCATIONS, PATHOLOGIES, Prompt, canonical, canonical_pathology

__all__ = ["NormalisedPhrase", "normalise", "closest_prompts", "vocabulary_prompts"]


@dataclass(frozen=True)
class NormalisedPhrase:
    phrase: str
    """The phrase as given."""
    prompt: str
    """The canonical prompt text (what a model is given)."""
    structured: Prompt
    """The same prompt, structured (locations, pathology)."""

    @property
    def changed(self) -> bool:
        """Whether the prompt differs from the phrase (letter case and spacing aside)."""
        return " ".join(self.phrase.lower().split()) != self.prompt


# Words naming each finding, one finding per word (cxrg.vocab.SYNONYMS lets "opacity" mean pneumonia in a
# report; in a phrase, the word says which finding it is). Longest forms win.
_HEADS: dict[str, tuple[str, ...]] = {
    "Pneumonia": (r"pneumonias?", r"bronchopneumonias?", r"pneumonic"),
    "Pneumothorax": (r"pneumothora(?:x|ces|xes)", r"hydropneumothora(?:x|ces)", r"ptx"),
    "Pleural Effusion": (r"(?:pleural )?effusions?", r"pleural fluid(?: collections?)?", r"hydrothorax",
                         r"blunt(?:ing|ed)"),
    "Lung Opacity": (r"(?:lung )?opacit(?:y|ies)", r"opacifications?", r"opacified", r"infiltrates?",
                     r"infiltration", r"air[\s-]?space (?:disease|process|opacit(?:y|ies))"),
    "Atelectasis": (r"atelectas[ie]s", r"atelectatic", r"collapsed?", r"volume loss"),
    "Cardiomegaly": (),  # all of mentions.py's forms (they name nothing else)
    "Consolidation": (r"consolidations?", r"consolidative", r"consolidated"),
    "Edema": (),  # all of mentions.py's forms
}
# An adjective of one finding in front of another finding's noun names the finding: "consolidative opacity".
_ADJECTIVES = frozenset({"pneumonic", "consolidative", "consolidated", "atelectatic"})
# A finding explained by a later one is that one: "opacity concerning for pneumonia".
_EXPLAINS = re.compile(r"\b(?:likely|probably|possibly|concerning|suspicious|consistent|compatible|"
                       r"suggest\w*|represent\w*|reflect\w*|worrisome|due to|secondary to|favou?r\w*|"
                       r"may be|could be)\b")
_GUARD = {"Pleural Effusion": r"(?<!pericardial )(?<!joint )", "Edema": r"(?<!soft tissue )(?<!subcutaneous )"
                                                                       r"(?<!tissue )(?<!wall )"}


@cache
def _head_pattern(pathology: str) -> re.Pattern[str]:
    from cxrg.curation.mentions import mention_pattern

    forms = _HEADS[pathology]
    if not forms:
        return mention_pattern(pathology)
    body = "|".join(sorted(forms, key=len, reverse=True))
    return re.compile(rf"\b{_GUARD.get(pathology, '')}(?:{body})\b")


@dataclass(frozen=True)
class _Head:
    pathology: str
    start: int
    end: int
    text: str


def _heads(norm: str) -> list[_Head]:
    """Finding words in the phrase, in order, not overlapping (longest first)."""
    found: list[_Head] = []
    for pathology in PATHOLOGIES:
        for match in _head_pattern(pathology).finditer(norm):
            found.append(_Head(pathology, match.start(), match.end(), match.group(0)))
    found.sort(key=lambda h: (h.start, -(h.end - h.start)))
    kept: list[_Head] = []
    for head in found:
        if kept and head.start < kept[-1].end:
            continue
        kept.append(head)
    return kept


def _status(text: str, pathology: str, head: _Head) -> str:
    """present / negated / resolved / uncertain of the finding word, by the curation's cues."""
    analysis = analyse(text, pathology)
    for k in analysis.targets:
        mention = analysis.mentions[k]
        first, last = analysis.toks[mention.start].start, analysis.toks[mention.end - 1].end
        if first < head.end and head.start < last:
            return analysis.status[k]
    return PRESENT


def _choose(text: str, norm: str) -> str:
    """The one finding a phrase is about (see the module docstring), or InputError."""
    heads = _heads(norm)
    if not heads:
        raise _unreadable(text, "it names none of the 8 findings")
    # an adjective in front of another finding's word names the finding ("consolidative opacity")
    merged: list[_Head] = []
    for head in heads:
        if merged and merged[-1].text in _ADJECTIVES and not norm[merged[-1].end:head.start].strip():
            continue
        merged.append(head)
    states = [(head, _status(text, head.pathology, head)) for head in merged]
    present = [(h, s) for h, s in states if s in (PRESENT, UNCERTAIN)]
    if not present:
        state = states[0][1]
        word = {NEGATED: "negates", RESOLVED: "says it has resolved"}.get(state, "does not assert")
        raise _unreadable(text, f"it {word} its finding ({states[0][0].text!r})")
    pathologies = list(dict.fromkeys(h.pathology for h, _ in present))
    if len(pathologies) == 1:
        return pathologies[0]
    # a finding explained by a later one is that one: "left basilar opacity, likely atelectasis"
    last = present[-1][0]
    between = norm[present[-2][0].end:last.start]
    alternatives = re.search(r"\b(?:versus|vs|or)\b", between)
    if len(pathologies) == 2 and _EXPLAINS.search(between) and not alternatives:
        return last.pathology
    raise _unreadable(text, f"it names {len(pathologies)} findings ({', '.join(pathologies)}); "
                            "give one finding per prompt")


def _free_text(text: str, pathology: str | None) -> Prompt:
    norm = lower_text(" ".join(text.split()))
    if pathology is None:
        pathology = _choose(text, norm)
    analysis = analyse(text, pathology)
    if analysis.targets and analysis.verdict() in (NEGATED, RESOLVED):
        raise _unreadable(text, f"it says the finding is {analysis.verdict()}")
    locations = rule_locations(analysis) if analysis.present else ()
    if not locations and not [m for m in analysis.mentions if not m.target]:
        locations = rule_locations(analysis, whole=True)  # "right lower lobe airspace process"
    return canonical(Prompt(locations, pathology))


def normalise(text: str, exact: bool = False, *, pathology: str | None = None) -> NormalisedPhrase:
    """The canonical prompt for a phrase (see the module docstring).

    `exact`: accept only vocabulary prompts, as written (`Prompt.parse`), no reading.
    `pathology`: the finding, when the caller knows it (e.g. MS-CXR's `category_name`); the phrase then
    only gives the locations.
    """
    phrase = str(text)
    if not phrase.strip():
        raise InputError("empty phrase", hint="write a finding, e.g. 'left lower lobe pneumonia'")
    if exact:
        try:
            structured = Prompt.parse(phrase)
        except InputError as exc:
            raise InputError(f"{exc.what} (exact prompt)", where=exc.where,
                             hint=_suggestion(phrase) + "; or drop the exact-prompt option to read free "
                                                        "text") from None
        if pathology is not None and structured.pathology != canonical_pathology(pathology):
            raise InputError(f"prompt {phrase!r} is about {structured.pathology}, not {pathology}")
        return NormalisedPhrase(phrase, structured.format(), structured)
    wanted = canonical_pathology(pathology) if pathology is not None else None
    try:
        parsed: Prompt | None = Prompt.parse(phrase)
    except InputError:
        parsed = None
    if parsed is not None and (wanted is None or parsed.pathology == wanted):
        structured = canonical(parsed)
    else:
        structured = _free_text(phrase, wanted)
    return NormalisedPhrase(phrase, structured.format(), structured)


@cache
def vocabulary_prompts() -> tuple[str, ...]:
    """Every canonical prompt with at most one location (the candidates for suggestions)."""
    out: list[str] = []
    for pathology in PATHOLOGIES:
        for locations in ((), *((loc,) for loc in LOCATIONS)):
            text = canonical(Prompt(locations, pathology)).format()
            if text not in out:
                out.append(text)
    return tuple(out)


def closest_prompts(text: str, n: int = 3) -> list[str]:
    """The vocabulary prompts closest to `text` (difflib), best first."""
    norm = " ".join(str(text).lower().split())
    return difflib.get_close_matches(norm, vocabulary_prompts(), n=n, cutoff=0.0)


def _suggestion(text: str) -> str:
    return "closest vocabulary prompts: " + ", ".join(repr(p) for p in closest_prompts(text))


def _unreadable(text: str, why: str) -> InputError:
    return InputError(f"cannot read phrase {text!r} as a prompt: {why}", hint=_suggestion(text))
