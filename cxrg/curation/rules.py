"""The deterministic location rules: which location phrase belongs to which finding in a sentence.

A sentence is analysed once (tokens, clauses, mentions of the label and of other findings, location groups,
each label mention's assertion). Groups are then attached to mentions, inside one clause:

1. a group that overlaps a mention belongs to it ("left *pleural* effusion");
2. after a mention, across prepositions, verbs of presence and degree words, groups follow it
   ("consolidation *at both lung bases*", "effusion is now present *on the right*", "opacities
   *bilaterally*", "effusions, *right* greater than *left*") -- unless a group not introduced by a
   preposition runs straight into the next finding ("effusion, *left lower lobe* atelectasis");
3. before a mention, across modifiers ("*left* small loculated effusion", "*right lower lobe* patchy
   opacity", "at the *right base*, there is opacity");
4. a label mention with no group of its own borrows one from a finding it is coordinated with ("bibasilar
   atelectasis and *effusions*") or that it explains ("left basilar opacity, likely *atelectasis*").

This is what RadGraph-XL misses by design (its anatomy entities must precede or be linked to the
finding), so the rules also serve to complete RadGraph-XL in the hybrid extractor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cxrg.curation.anatomy import JOINERS, LEXICON, Group, groups, locations_of_groups
from cxrg.curation.mentions import (
    NEGATED,
    PRESENT,
    RESOLVED,
    UNCERTAIN,
    Mention,
    assertion,
    find_mentions,
    mention_pattern,
)
from cxrg.curation.text import Token, clause_ids, normalise, tokens

PREPOSITIONS = frozenset({"in", "at", "of", "within", "involving", "on", "along", "over", "overlying",
                          "throughout", "into", "to", "near", "adjacent", "above", "below", "through",
                          "across", "from", "projecting", "about", "around", "toward", "towards"})
_DEGREE = frozenset({"predominantly", "predominately", "predominant", "primarily", "mainly", "mostly", "most",
                     "particularly", "especially", "greatest", "greater", "larger", "worse", "more", "than",
                     "prominent", "pronounced", "marked", "markedly", "slightly", "mildly", "somewhat",
                     "minimally", "moderately", "relatively"})
POST_GAP = PREPOSITIONS | _DEGREE | frozenset({
    "the", "a", "an", "is", "are", "was", "were", "has", "have", "been", "be", "now", "again", "still",
    "also", "present", "seen", "noted", "identified", "visualized", "visible", "demonstrated", "evident",
    "appreciated", "persists", "persist", "persisting", "persistent", "remains", "remain", "unchanged",
    "stable", "increased", "increasing", "decreased", "decreasing", "improved", "improving", "worsened",
    "worsening", "new", "newly", "developed", "developing", "extending", "extends", "extend", "small",
    "tiny", "trace", "moderate", "large", "which", "that", "both", "appears", "appear",
    "likely", "probably", "possibly", "located", "position", "positioned", "space", "area", "region",
    "portion", "aspect", "periphery", "apparent", "(", ")", "more", "substantially",
    "posterior", "anterior", "lateral", "medial", "superior", "inferior", "xxxx", "_", "platelike", "linear",
    "patchy", "streaky", "nodular",
})
PRE_GAP = _DEGREE | frozenset({
    "small", "smaller", "large", "larger", "moderate", "mild", "minimal", "trace", "tiny", "little",
    "patchy", "focal", "streaky", "hazy", "linear", "platelike", "plate", "like", "subsegmental",
    "segmental", "dense", "denser", "increased", "increasing", "decreased", "decreasing", "new", "newly",
    "persistent", "residual", "layering", "loculated", "sized", "size", "airspace", "alveolar",
    "interstitial", "ill", "defined", "confluent", "reticular", "reticulonodular", "faint", "subtle",
    "vague", "rounded", "round", "wedge", "shaped", "band", "bandlike", "discoid", "scattered", "diffuse",
    "multifocal", "worsening", "worsened", "improving", "improved", "unchanged", "stable", "slight",
    "apparent", "possible", "possibly", "probable", "probably", "likely", "questionable", "suspected",
    "early", "developing", "evolving", "extensive", "massive", "very", "less", "significant",
    "substantial", "volume", "lobar", "vascular", "parenchymal", "ground", "glass", "peribronchial",
    "peripheral", "medial", "lateral", "anterior", "posterior", "dependent", "a", "an", "some", "there",
    "is", "are", "heterogeneous", "homogeneous", "known", "previously", "described", "chronic", "acute",
    "recurrent", "partial", "complete", "completely", "partially", "near", "nearly", "masslike",
    "underlying", "associated", "area", "areas", "focus", "foci", "amount", "degree", "component",
    "of", ",", "-", "/", "(", ")", "again", "seen", "noted", "mildly", "free", "tracking", "moderately",
    "severe", "severely", "bulla", "enlarging", "enlarged", "opacified", "coarse", "fine",
    "obscuring", "additional", "another", "superimposed", "continued", "subpleural", "pleural-based",
    "xxxx", "_", "with", "nodular", "fibronodular", "mixed", "mm", "cm", "x", "approximately", "air",
})
# A label mention may borrow the location of a finding it is coordinated with or explains.
_COORD = frozenset({"and", "or", ",", "/", "-", "with", "both", "versus", "vs"})
_LINK = _COORD | frozenset({
    "likely", "possibly", "probably", "which", "that", "may", "might", "could", "can", "would", "be", "is",
    "are", "represent", "represents", "representing", "reflect", "reflects", "reflecting", "consistent",
    "compatible", "concerning", "worrisome", "suspicious", "suggestive", "suggesting", "suggests", "for",
    "of", "due", "to", "secondary", "from", "either", "most", "in", "keeping", "as", "such", "possible",
    "probable", "a", "an", "the", "early", "developing", "superimposed", "favored", "favor", "related",
    "mild", "small", "some", "component", "underlying", "associated", "suspect", "suspected", "question",
    "questionable", "presumably", "presumed", "also", "combination", "focal", "adjacent", "accompanying",
    "nearby",
})
_WALK_LIMIT = 14


def _neutral(tok: Token) -> bool:
    """A number ("6", "1.7") or a location word that formed no group ("lobe", "upper" alone)."""
    return tok.text[0].isdigit() or tok.text in LEXICON


@dataclass
class Analysis:
    """One sentence looked at for one pathology."""

    sentence: str
    pathology: str
    toks: list[Token]
    clauses: list[int]
    mentions: list[Mention]
    groups: list[Group]
    status: dict[int, str] = field(default_factory=dict)
    """Assertion of each label mention, by its index in `mentions`."""

    @property
    def targets(self) -> list[int]:
        return [k for k, m in enumerate(self.mentions) if m.target]

    @property
    def present(self) -> list[int]:
        return [k for k in self.targets if self.status.get(k) == PRESENT]

    def verdict(self) -> str:
        """present if any label mention is asserted; else resolved, negated or uncertain (that order)."""
        states = [self.status[k] for k in self.targets]
        if not states:
            return "no mention"
        for state in (PRESENT, RESOLVED, NEGATED, UNCERTAIN):
            if state in states:
                return state
        return states[0]


def mentions_label(sentence: str, pathology: str) -> bool:
    """Cheap first test: does the sentence contain a surface form of the label at all?"""
    return mention_pattern(pathology).search(normalise(sentence)) is not None


def analyse(sentence: str, pathology: str) -> Analysis:
    norm = normalise(sentence)
    toks = tokens(sentence)
    clauses = clause_ids(toks)
    found = find_mentions(norm, toks, pathology)
    result = Analysis(sentence, pathology, toks, clauses, found, groups(toks))
    for k in result.targets:
        result.status[k] = assertion(toks, clauses, found[k], found)
    return result


def attach(analysis: Analysis) -> dict[int, list[Group]]:
    """Groups owned by each mention (by index), following rules 1-3 of the module docstring."""
    toks, clauses, found, grps = analysis.toks, analysis.clauses, analysis.mentions, analysis.groups
    owner: dict[int, int] = {}
    mention_at = {k: i for i, m in enumerate(found) for k in range(m.start, m.end)}
    group_start = {g.start: i for i, g in enumerate(grps)}
    group_end = {g.end: i for i, g in enumerate(grps)}
    for gi, group in enumerate(grps):
        for mi, mention in enumerate(found):
            if group.start < mention.end and mention.start < group.end:
                owner[gi] = mi
                break

    def introduced_by_preposition(group: Group) -> bool:
        k = group.start - 1
        while k >= 0 and toks[k].text in ("the", "both"):
            k -= 1
        return k >= 0 and toks[k].text in PREPOSITIONS

    def runs_into_mention(group: Group) -> bool:
        k = group.end
        while k < len(toks) and clauses[k] == clauses[group.start] and toks[k].text in PRE_GAP \
                and toks[k].text != ",":
            k += 1
        return k < len(toks) and k in mention_at and clauses[k] == clauses[group.start]

    for mi, mention in enumerate(found):  # rule 2: after the mention
        k, steps, clause = mention.end, 0, clauses[mention.start]
        while k < len(toks) and clauses[k] == clause and steps < _WALK_LIMIT:
            after = group_start.get(k)
            if after is not None:
                group = grps[after]
                if after in owner and owner[after] != mi:
                    break
                if not introduced_by_preposition(group) and runs_into_mention(group):
                    break
                owner[after] = mi
                k = group.end
                continue
            word = toks[k].text
            if k in mention_at or not (_neutral(toks[k]) or word in POST_GAP or word in JOINERS):
                break
            k += 1
            steps += 1
    for mi, mention in enumerate(found):  # rule 3: before the mention
        k, steps, clause = mention.start - 1, 0, clauses[mention.start]
        while k >= 0 and clauses[k] == clause and steps < _WALK_LIMIT:
            before = group_end.get(k + 1)
            if before is not None:
                if before in owner and owner[before] != mi:
                    break
                owner[before] = mi
                k = grps[before].start - 1
                continue
            word = toks[k].text
            if k in mention_at or not (_neutral(toks[k]) or word in PRE_GAP or word in ("and", "or")):
                break
            k -= 1
            steps += 1
    owned: dict[int, list[Group]] = {}
    for gi in sorted(owner):
        owned.setdefault(owner[gi], []).append(grps[gi])
    return owned


# "with" alone joins findings side by side ("hyperinflated lungs with opacities"); a location is shared only
# when the words say the findings are together ("effusion with adjacent atelectasis").
_TOGETHER = frozenset({"adjacent", "associated", "accompanying", "nearby", "underlying", "superimposed"})


# A finding that is not one of the 8 pathologies lends its location only when the words say it may be the
# same thing ("density at the left base, likely atelectasis"; "atelectasis or scarring in the left base")
# or is next to it ("elevated right hemidiaphragm with adjacent opacity"), not when it merely stands beside
# the label in a list ("hyperinflated lungs and streaky opacities").
_SAME_THING = frozenset({"represent", "represents", "representing", "reflect", "reflects", "reflecting",
                         "likely", "consistent", "compatible", "concerning", "suggestive", "suggesting",
                         "suggests", "due", "secondary", "versus", "vs", "or", "probably", "possibly",
                         "favored", "related", "presumably", "presumed", "keeping", "/"})


def _shares(words: list[str], other: Mention) -> bool:
    if not other.pathology and not any(w in _SAME_THING or w in _TOGETHER for w in words):
        return False
    return "with" not in words or any(w in _TOGETHER for w in words)


def _borrow(analysis: Analysis, mi: int, owned: dict[int, list[Group]]) -> list[Group]:
    """Rule 4: groups of a present finding this mention is coordinated with or explains."""
    toks, clauses, found = analysis.toks, analysis.clauses, analysis.mentions
    mention = found[mi]
    clause = clauses[mention.start]
    mention_tokens = {k for m in found for k in range(m.start, m.end)}

    def usable(hi: int) -> bool:
        other = found[hi]
        if not owned.get(hi) or clauses[other.start] != clause:
            return False
        return not other.target or analysis.status.get(hi) == PRESENT

    for hi in range(mi - 1, -1, -1):  # a finding before it: "left basilar opacity, likely atelectasis"
        before = found[hi]
        owned_tokens = {k for g in owned.get(hi, []) for k in range(g.start, g.end)}
        gap = [k for k in range(before.end, mention.start)
               if k not in owned_tokens and k not in mention_tokens]
        if any(toks[k].text not in _LINK and toks[k].text not in PRE_GAP and toks[k].text not in POST_GAP
               for k in gap):
            break
        if usable(hi) and _shares([toks[k].text for k in gap], found[hi]):
            return owned[hi]
    for hi in range(mi + 1, len(found)):  # a finding after it: "atelectasis and effusion at the left base"
        after = found[hi]
        owned_tokens = {k for g in owned.get(hi, []) for k in range(g.start, g.end)}
        gap = [k for k in range(mention.end, after.start)
               if k not in mention_tokens and k not in owned_tokens]
        if any(toks[k].text not in _COORD and toks[k].text not in PRE_GAP and toks[k].text not in POST_GAP
               for k in gap):
            break
        if usable(hi) and _shares([toks[k].text for k in gap], found[hi]):
            return owned[hi]
    return []


def rule_locations(analysis: Analysis, whole: bool = False) -> tuple[str, ...]:
    """Locations of the label in the sentence: from its present mentions (or every group if `whole`)."""
    pathology = analysis.pathology
    if pathology == "Cardiomegaly":
        return ("cardiomegaly",) if whole or analysis.present else ()
    if whole:
        return locations_of_groups(analysis.groups, pathology)
    owned = attach(analysis)
    chosen: list[Group] = []
    for mi in analysis.present:
        mine = owned.get(mi) or _borrow(analysis, mi, owned)
        chosen.extend(g for g in mine if g not in chosen)
    chosen.sort(key=lambda g: g.start)
    return locations_of_groups(chosen, pathology)


def locate(sentence: str, pathology: str) -> tuple[str, tuple[str, ...]]:
    """(verdict, locations) for one sentence: the rules extractor end to end, for tests and debugging."""
    if not mentions_label(sentence, pathology):
        return "no mention", ()
    analysis = analyse(sentence, pathology)
    verdict = analysis.verdict()
    if verdict != PRESENT:
        return verdict, ()
    return verdict, rule_locations(analysis)


def describe(analysis: Analysis) -> list[str]:
    """Human-readable lines: mentions with their state, and the groups each one owns (for debugging)."""
    owned = attach(analysis)
    lines = []
    for mi, mention in enumerate(analysis.mentions):
        state = analysis.status.get(mi, "other")
        texts = [g.text for g in owned.get(mi, [])]
        lines.append(f"{mention.text!r} [{state}] <- {texts}")
    return lines

