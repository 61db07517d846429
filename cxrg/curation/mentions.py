"""Finding mentions in a sentence and whether each is asserted, negated, resolved or uncertain.

A mention of the label is one of its surface forms: `cxrg.vocab.SYNONYMS` plus the report phrasings below
(e.g. "airspace disease" for pneumonia and lung opacity, "collapse" for atelectasis, "heart size is
enlarged" for cardiomegaly). Mentions of *other* findings matter too: they stop a location from being
attached to the wrong finding ("right chest tube ... left pneumothorax").

Negation and resolution follow NegEx: a cue before the mention ("no", "without", "free of", "resolution
of") whose scope reaches it, or a cue after it in the same clause ("is not seen", "has resolved", "has
cleared", "no longer"). Pseudo-cues such as "no change in" do not negate. A prefix cue's scope ends at a
verb ("No pneumothorax is seen and a left effusion persists"), at "there", or at the clause's end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from cxrg.curation.text import Token
from cxrg.vocab import PATHOLOGIES, SYNONYMS

# Extra surface forms, beyond cxrg.vocab.SYNONYMS, as regular expressions (lower case, word-bounded).
_EXTRA: dict[str, tuple[str, ...]] = {
    "Pneumonia": (r"bronchopneumonia", r"pneumonic", r"air[\s-]?space disease", r"air[\s-]?space process"),
    "Pneumothorax": (r"hydropneumothora(?:x|ces)", r"ptx"),
    "Pleural Effusion": (r"blunt(?:ing|ed)", r"hydrothorax", r"pleural fluid collections?"),
    "Lung Opacity": (r"infiltrates?", r"infiltration", r"air[\s-]?space disease", r"air[\s-]?space process"),
    "Atelectasis": (r"collapsed?", r"volume loss"),
    "Cardiomegaly": (
        r"(?:heart|cardiac silhouette|cardiac size|heart size|cardiac contour|cardiac shadow|cardiac "
        r"silhouette size)(?: \w+){0,3}? (?:is|are|remains|remain|appears?|was|has become|is again)"
        r"(?: \w+){0,2}? (?:enlarged|large|increased)",
        r"enlarge(?:d|ment of)(?: the)? (?:heart|cardiac silhouette|cardiac shadow|cardiac contour)",
        r"(?:cardiac|heart) enlargement", r"enlarged heart size",
    ),
    "Consolidation": (r"consolidated",),
    "Edema": (r"(?:pulmonary |interstitial |alveolar )?(?:vascular |venous )?(?:congestion|engorgement)",
              r"pulmonary (?:interstitial |alveolar )?o?edema", r"fluid overload"),
}

# Forms that look like a mention but are another finding.
_EXCLUDE: dict[str, str] = {
    "Pleural Effusion": r"(?<!pericardial )(?<!joint )(?<!subpulmonic pericardial )",
    "Edema": r"(?<!soft tissue )(?<!subcutaneous )(?<!tissue )(?<!wall )",
}

OTHER_FINDINGS = (
    r"nodules?", r"nodular densit(?:y|ies)", r"masse?s?", r"granulomas?", r"granulomatous",
    r"scar(?:ring|s)?",
    r"calcifications?", r"calcified", r"fractures?", r"thickening", r"emphysema(?:tous)?", r"fibrosis",
    r"fibrotic", r"bronchiectasis", r"pacemaker", r"catheters?", r"picc", r"lines?", r"tubes?", r"clips?",
    r"hernia", r"lesions?", r"deformity", r"drains?", r"ports?", r"wires?", r"pneumoperitoneum",
    r"elevation", r"elevated", r"eventration", r"hyperinflation", r"hyperinflated", r"hyperexpanded",
    r"cavity", r"cavitary", r"cysts?", r"markings", r"pericardial effusion", r"stents?", r"leads?",
    r"pneumomediastinum", r"free air", r"sternotomy", r"spondylosis", r"osteophytes?", r"densit(?:y|ies)",
)

_SUFFIXES = {"opacity": r"opacit(?:y|ies)", "opacities": r"opacit(?:y|ies)"}


def _word_pattern(word: str) -> str:
    return r"[\s-]+".join(_SUFFIXES.get(piece, re.escape(piece)) for piece in word.split())


@cache
def mention_pattern(pathology: str) -> re.Pattern[str]:
    """One regular expression matching every surface form of the pathology (longest forms first)."""
    forms = [_word_pattern(w) for w in SYNONYMS[pathology]] + list(_EXTRA.get(pathology, ()))
    forms.sort(key=len, reverse=True)
    guard = _EXCLUDE.get(pathology, "")
    return re.compile(rf"\b{guard}(?:{'|'.join(forms)})\b")


@cache
def others_pattern(pathology: str) -> re.Pattern[str]:
    """Mentions of the other 7 pathologies."""
    return re.compile("|".join(f"(?:{mention_pattern(p).pattern})" for p in PATHOLOGIES if p != pathology))


FINDINGS_PATTERN = re.compile(rf"\b(?:{'|'.join(OTHER_FINDINGS)})\b")


@dataclass(frozen=True)
class Mention:
    start: int
    """First token index."""
    end: int
    """One past the last token index."""
    target: bool
    text: str
    pathology: bool = True
    """A mention of one of the 8 pathologies (False: another finding, e.g. a nodule or a tube)."""


def _token_span(toks: Sequence[Token], start: int, end: int) -> tuple[int, int] | None:
    first = next((k for k, t in enumerate(toks) if t.end > start), None)
    if first is None:
        return None
    last = first
    while last < len(toks) and toks[last].start < end:
        last += 1
    return (first, last) if last > first else None


def find_mentions(norm: str, toks: Sequence[Token], pathology: str) -> list[Mention]:
    """Target mentions of `pathology` and mentions of other findings, in order, not overlapping."""
    found: list[Mention] = []
    taken: set[int] = set()
    passes = ((mention_pattern(pathology), True, True), (others_pattern(pathology), False, True),
              (FINDINGS_PATTERN, False, False))
    for pattern, target, is_pathology in passes:
        for match in pattern.finditer(norm):
            span = _token_span(toks, match.start(), match.end())
            if span is None or any(k in taken for k in range(*span)):
                continue
            taken.update(range(*span))
            found.append(Mention(span[0], span[1], target, match.group(0), is_pathology))
    found.sort(key=lambda m: m.start)
    return found


# --- assertion -----------------------------------------------------------------------------------------

PRESENT, NEGATED, RESOLVED, UNCERTAIN = "present", "negated", "resolved", "uncertain"

_PRE_CUES: dict[tuple[str, ...], str] = {
    ("no",): NEGATED, ("not",): NEGATED, ("without",): NEGATED, ("free", "of"): NEGATED,
    ("negative", "for"): NEGATED, ("absence", "of"): NEGATED, ("absent",): NEGATED,
    ("rather", "than"): NEGATED, ("instead", "of"): NEGATED, ("nor",): NEGATED,
    ("no", "longer"): RESOLVED, ("resolution", "of"): RESOLVED, ("resolved",): RESOLVED,
    ("cleared",): RESOLVED, ("clearing", "of"): RESOLVED, ("removal", "of"): RESOLVED,
    ("cannot", "exclude"): UNCERTAIN, ("can't", "exclude"): UNCERTAIN, ("not", "exclude"): UNCERTAIN,
    ("cannot", "be", "excluded"): UNCERTAIN, ("cannot", "rule", "out"): UNCERTAIN,
    ("rule", "out"): UNCERTAIN, ("r", "/", "o"): UNCERTAIN, ("to", "exclude"): UNCERTAIN,
    ("evaluate", "for"): UNCERTAIN, ("evaluation", "for"): UNCERTAIN, ("assess", "for"): UNCERTAIN,
    ("question", "of"): UNCERTAIN, ("concern", "for"): UNCERTAIN,
}
_POST_CUES: dict[tuple[str, ...], str] = {
    ("not", "seen"): NEGATED, ("not", "identified"): NEGATED, ("not", "present"): NEGATED,
    ("not", "visualized"): NEGATED, ("not", "appreciated"): NEGATED, ("not", "evident"): NEGATED,
    ("not", "demonstrated"): NEGATED, ("not", "visible"): NEGATED, ("not", "detected"): NEGATED,
    ("absent",): NEGATED, ("none",): NEGATED,
    ("resolved",): RESOLVED, ("resolution",): RESOLVED, ("cleared",): RESOLVED, ("no", "longer"): RESOLVED,
    ("disappeared",): RESOLVED, ("gone",): RESOLVED,
    ("be", "excluded"): UNCERTAIN, ("not", "excluded"): UNCERTAIN, ("be", "ruled", "out"): UNCERTAIN,
    ("not", "ruled", "out"): UNCERTAIN,
}

# "no change in the left effusion" does not negate the effusion.
_CHANGE_WORDS = frozenset({"change", "changes", "changed", "increase", "increased", "decrease", "decreased",
                           "worsening", "worsened", "improvement", "improved", "progression", "enlargement",
                           "interval"})
_NEGATORS = frozenset({"no", "not", "without"})

# A prefix cue's scope ends at a verb or at these words.
VERBS = frozenset({"is", "are", "was", "were", "be", "been", "has", "have", "had", "remains", "remain",
                   "remained", "persists", "persist", "persisted", "seen", "noted", "identified",
                   "demonstrated", "appears", "appear", "shows", "show", "may", "could", "might", "can",
                   "will", "would", "present", "visualized"})
_SCOPE_BREAK = frozenset({"there", "which", "who", "that", "with"})  # "no cardiomegaly with ... effusions"


def _by_first_word(table: dict[tuple[str, ...], str]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for cue, kind in sorted(table.items(), key=lambda item: -len(item[0])):
        index.setdefault(cue[0], []).append((cue, kind))
    return index


_PRE_INDEX, _POST_INDEX = _by_first_word(_PRE_CUES), _by_first_word(_POST_CUES)


def _cue_at(toks: Sequence[Token], k: int, index: dict[str, list[tuple[tuple[str, ...], str]]]
            ) -> tuple[int, str] | None:
    """The longest cue starting at token k: (its length, its kind)."""
    for cue, kind in index.get(toks[k].text, ()):
        if len(cue) <= len(toks) - k and all(toks[k + j].text == word for j, word in enumerate(cue)):
            return len(cue), kind
    return None


def _pseudo(toks: Sequence[Token], k: int) -> bool:
    if toks[k].text not in _NEGATORS:
        return False
    window = [t.text for t in toks[k + 1:k + 4]]
    return any(word in _CHANGE_WORDS for word in window)


def assertion(toks: Sequence[Token], clauses: Sequence[int], mention: Mention,
              mentions: Sequence[Mention]) -> str:
    """present / negated / resolved / uncertain for one mention, from cues in its clause."""
    clause = clauses[mention.start]
    begin = mention.start
    while begin > 0 and clauses[begin - 1] == clause:
        begin -= 1
    best: str | None = None
    k = begin
    while k < mention.start:
        cue = _cue_at(toks, k, _PRE_INDEX)
        if cue is None or _pseudo(toks, k):
            k += 1
            continue
        size, kind = cue
        if _reaches(toks, k + size, mention.start):
            best = kind
        k += size
    if best is not None:
        return best
    starts = {m.start for m in mentions if m is not mention}
    verb_seen = False
    k = mention.end
    while k < len(toks) and clauses[k] == clause:
        if k in starts and verb_seen:
            break
        if toks[k].text in VERBS:
            verb_seen = True
        cue = _cue_at(toks, k, _POST_INDEX)
        if cue is not None and not _pseudo(toks, k):
            return cue[1]
        k += 1
    return PRESENT


NEGATION_SCOPES = ("sentence", "mention")


def sentence_verdict(toks: Sequence[Token]) -> str:
    """The paper's filter (App. D): a sentence that names the label is skipped when it contains a negation
    word ("no", "without", ...) or a resolution word ("resolved", ...) anywhere; no uncertainty filter, no
    pseudo-negation ("no change" counts). resolved if it has a resolution cue, else negated, else present.
    The words are the cues of the mention-level filter (the negation and resolution ones)."""
    found = set()
    for k in range(len(toks)):
        for index in (_PRE_INDEX, _POST_INDEX):
            cue = _cue_at(toks, k, index)
            if cue is not None and cue[1] in (NEGATED, RESOLVED):
                found.add(cue[1])
    return RESOLVED if RESOLVED in found else NEGATED if NEGATED in found else PRESENT


_PARTICIPLES = frozenset({"seen", "noted", "identified", "demonstrated", "described", "present"})
_BEFORE_PARTICIPLE = frozenset({"previously", "recently", "prior", "earlier", "formerly"})


def _reaches(toks: Sequence[Token], start: int, stop: int) -> bool:
    for k in range(start, stop):
        word = toks[k].text
        if word in _SCOPE_BREAK:
            return False
        if word in VERBS:
            # "resolution of the previously seen pneumonia": an adjective, not a verb
            if not (word in _PARTICIPLES and k > 0 and toks[k - 1].text in _BEFORE_PARTICIPLE):
                return False
    return True
