"""Anatomy words -> the 27 locations.

Both extractors end here: the rules find location phrases in a sentence, RadGraph-XL tags anatomy entities,
and either way the words are parsed into *groups* ("left lower lobe", "both lung bases", "on the right")
and then resolved, per pathology, into location names of `cxrg.vocab`:

* a group is a set of sides x a set of zones: "right upper and middle lobes" is right x {upper, middle};
  a plural noun without a side ("bases", "lower lobes", "lungs") means both sides;
* a zone without a side takes the side of a side-only group of the same finding ("effusion ... pleural ...
  on the right" -> right pleural); with no side anywhere it is dropped (there is no side-less location);
* per pathology: "heart"/"cardiac" give `cardiomegaly` (Cardiomegaly only), "pulmonary", "lungs" and a
  side-less "bilateral" give `pulmonary` for Edema, and the zone "pleural" is kept for Pleural Effusion and
  Pneumothorax only (a "pleural-based opacity" is located by its side);
* a side-only location is dropped when a zone of that side is known ("left" + "left lower" -> "left
  lower"), and symmetric pairs merge into bilateral ones (`cxrg.vocab.merge_bilateral`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cxrg.curation.text import Token, tokens
from cxrg.vocab import location_name, split_location, tidy_locations

L, R, B = "left", "right", "bilateral"


@dataclass(frozen=True)
class Word:
    """What one word says about location."""

    side: str | None = None
    zone: str | None = None          # a zone of cxrg.vocab.ZONES, or "lingular" / "heart" / "pulmonary"
    noun: bool = False               # lung, lobe, zone, base ... (makes a weak zone word count)
    plural: bool = False             # bases, lobes, lungs, apices: both sides unless a side is named
    weak: bool = False               # upper/lower/mid/both/cp count only next to a noun or a side
    implied_side: str | None = None  # retrocardiac is the left lower lobe


LEXICON: dict[str, Word] = {
    "left": Word(side=L), "right": Word(side=R),
    "bilateral": Word(side=B), "bilaterally": Word(side=B), "bilat": Word(side=B),
    "both": Word(side=B, weak=True), "each": Word(side=B, weak=True),
    "bibasilar": Word(side=B, zone="base"), "bibasal": Word(side=B, zone="base"),
    "bibasally": Word(side=B, zone="base"), "bibasilarly": Word(side=B, zone="base"),
    "biapical": Word(side=B, zone="apical"), "bihilar": Word(side=B, zone=""),
    "apex": Word(zone="apical"), "apical": Word(zone="apical"), "apically": Word(zone="apical"),
    "apices": Word(zone="apical", plural=True), "apicolateral": Word(zone="apical"),
    "upper": Word(zone="upper", weak=True), "suprahilar": Word(zone="upper"),
    "middle": Word(zone="middle", weak=True), "mid": Word(zone="middle", weak=True),
    "midlung": Word(zone="middle", noun=True), "midzone": Word(zone="middle", noun=True),
    "lower": Word(zone="lower", weak=True), "infrahilar": Word(zone="lower"),
    "retrocardiac": Word(zone="lower", implied_side=L),
    "costophrenic": Word(zone="costophrenic"), "costodiaphragmatic": Word(zone="costophrenic"),
    "cp": Word(zone="costophrenic", weak=True),
    "pleural": Word(zone="pleural"), "pleura": Word(zone="pleural"), "subpulmonic": Word(zone="pleural"),
    "base": Word(zone="base", noun=True), "bases": Word(zone="base", noun=True, plural=True),
    "basilar": Word(zone="base"), "basal": Word(zone="base"), "basally": Word(zone="base"),
    "lingula": Word(zone="lingular"), "lingular": Word(zone="lingular"),
    "heart": Word(zone="heart"), "cardiac": Word(zone="heart"),
    "pulmonary": Word(zone="pulmonary"),
    "perihilar": Word(zone=""), "parahilar": Word(zone=""), "hilar": Word(zone=""), "hilum": Word(zone=""),
    "juxtahilar": Word(zone=""),
    "hila": Word(zone="", plural=True),
    # lobe abbreviations: RLL = right lower lobe, ...
    "rul": Word(side=R, zone="upper", noun=True), "rml": Word(side=R, zone="middle", noun=True),
    "rll": Word(side=R, zone="lower", noun=True), "lul": Word(side=L, zone="upper", noun=True),
    "lll": Word(side=L, zone="lower", noun=True),
    "lung": Word(noun=True), "lungs": Word(noun=True, plural=True),
    "lobe": Word(noun=True), "lobes": Word(noun=True, plural=True),
    "zone": Word(noun=True), "zones": Word(noun=True, plural=True),
    "field": Word(noun=True), "fields": Word(noun=True, plural=True),
    "hemithorax": Word(noun=True), "hemithoraces": Word(noun=True, plural=True),
    "angle": Word(noun=True), "angles": Word(noun=True, plural=True),
    "sulcus": Word(noun=True), "sulci": Word(noun=True, plural=True),
    "recess": Word(noun=True), "recesses": Word(noun=True, plural=True),
    "side": Word(noun=True), "sides": Word(noun=True, plural=True), "sided": Word(noun=True),
    "segment": Word(noun=True), "segments": Word(noun=True, plural=True),
    "hemidiaphragm": Word(noun=True), "hemidiaphragms": Word(noun=True, plural=True),
}

OUTSIDE_LIST = frozenset(name for name, word in LEXICON.items() if word.implied_side)
"""Areas that cxrg maps onto a location but the paper's list does not name (App. I (c): "opacity in the
retrocardiac region" was excluded): dropped under location_mappings="list" (cxrg/protocol.py)."""
MAPPINGS = ("list", "extended")


def outside_list(words: Iterable[str]) -> list[str]:
    """The words of a phrase that name an area outside the paper's location list."""
    return [w for w in (w.lower() for w in words) if w in OUTSIDE_LIST]


# Words that may sit between location words of one phrase: "right upper and middle lobes",
# "base of the left lung", "left- and right-sided"; "xxxx" and "_" are de-identification blanks (IU, MIMIC).
JOINERS = frozenset({"and", "or", ",", "-", "/", "of", "the", "to", "xxxx", "_"})
UNPAIRED_ZONES = ("lingular", "heart", "pulmonary")


@dataclass
class Group:
    """One location phrase: token span [start, end) in its sentence, the sides and zones it names."""

    start: int
    end: int
    sides: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    text: str = ""

    def parts(self) -> list[tuple[str | None, str]]:
        """(side or None, zone) pairs; zone "" is a whole side; unpaired zones carry no side."""
        out: list[tuple[str | None, str]] = []
        zones = self.zones or [""]
        for zone in zones:
            if zone in UNPAIRED_ZONES:
                out.append((None, zone))
            elif self.sides:
                out.extend((side, zone) for side in self.sides)
            elif zone:
                out.append((None, zone))
        return out


def _is_location(tok: Token) -> bool:
    return tok.text in LEXICON


def groups(toks: Sequence[Token]) -> list[Group]:
    """The location groups of a token sequence, in order (see the module docstring)."""
    found: list[Group] = []
    k = 0
    n = len(toks)
    while k < n:
        if not _is_location(toks[k]):
            k += 1
            continue
        # A phrase: location words, joined by joiners only when another location word follows.
        end = k + 1
        while end < n:
            if _is_location(toks[end]):
                end += 1
                continue
            j = end
            while j < n and toks[j].text in JOINERS:
                j += 1
            if j > end and j < n and _is_location(toks[j]):
                end = j + 1
                continue
            break
        found.extend(_split_phrase(toks, k, end))
        k = end
    return found


class _Building:
    def __init__(self, start: int) -> None:
        self.start = start
        self.end = start
        self.words: list[Word] = []

    def has_place(self) -> bool:
        return any(w.zone is not None or w.noun for w in self.words)


def _split_phrase(toks: Sequence[Token], start: int, end: int) -> list[Group]:
    pieces: list[_Building] = []
    current: _Building | None = None
    for k in range(start, end):
        word = LEXICON.get(toks[k].text)
        if word is None:
            continue
        unpaired = word.zone in UNPAIRED_ZONES
        side_after_place = word.side is not None and word.zone is None and current is not None \
            and current.has_place()
        if current is None or unpaired or side_after_place or _is_unpaired(current):
            current = _Building(k)
            pieces.append(current)
        current.words.append(word)
        current.end = k + 1
    out = []
    for piece in pieces:
        group = _make_group(piece)
        if group is not None:
            group.text = " ".join(t.text for t in toks[piece.start:piece.end])
            out.append(group)
    return out


def _is_unpaired(piece: _Building) -> bool:
    return any(w.zone in UNPAIRED_ZONES for w in piece.words)


def _make_group(piece: _Building) -> Group | None:
    words = piece.words
    strong_side = [w.side for w in words if w.side and not w.weak]
    has_noun = any(w.noun for w in words)
    has_strong_zone = any(w.zone is not None and not w.weak for w in words)
    anchored = bool(strong_side) or has_noun or has_strong_zone
    sides: list[str] = []
    for w in words:
        if w.side and w.weak and (strong_side or not (has_noun or has_strong_zone)):
            continue  # "both" counts only before a place and never next to a named side
        if w.side and w.side not in sides:
            sides.append(w.side)
    zones: list[str] = []
    for w in words:
        if w.zone is None or (w.weak and not anchored):
            continue
        if w.zone not in zones:
            zones.append(w.zone)
    if not sides:
        implied = [w.implied_side for w in words if w.implied_side]
        if implied:
            sides.append(implied[0])
        elif any(w.plural for w in words):
            sides.append(B)
    if len(zones) > 1 and "" in zones:
        zones.remove("")  # "perihilar" adds nothing next to a real zone
    if not sides and not zones:
        return None
    return Group(piece.start, piece.end, sides, zones)


def parse_phrase(text: str) -> list[Group]:
    """Groups of a free anatomy phrase, e.g. a RadGraph-XL entity: "left lower lobe" -> [left x lower]."""
    return groups(tokens(text))


def resolve(parts: Iterable[tuple[str | None, str]], pathology: str) -> tuple[str, ...]:
    """(side, zone) parts of one finding -> location names for that pathology (module docstring)."""
    kept: list[tuple[str | None, str]] = []
    for side, zone in parts:
        if zone == "heart":
            if pathology == "Cardiomegaly":
                kept.append((None, "cardiomegaly"))
            continue
        if pathology == "Cardiomegaly":
            continue
        if zone == "pulmonary" or (pathology == "Edema" and side == B and zone == ""):
            if pathology == "Edema":
                kept.append((None, "pulmonary"))
            continue
        if zone == "pleural" and pathology not in ("Pleural Effusion", "Pneumothorax"):
            zone = ""
            if side is None:
                continue
        kept.append((side, zone))
    side_only = [side for side, zone in kept if side is not None and zone == ""]
    completed: list[tuple[str | None, str]] = []
    used_sides = False
    for side, zone in kept:
        if side is None and zone not in ("lingular", "cardiomegaly", "pulmonary"):
            for s in side_only:
                completed.append((s, zone))
                used_sides = True
        else:
            completed.append((side, zone))
    if used_sides:
        completed = [(s, z) for s, z in completed if not (s is not None and z == "")]
    return _finish(completed)


def _finish(parts: Sequence[tuple[str | None, str]]) -> tuple[str, ...]:
    """Names of (side, zone) parts in order, tidied as one finding's (`cxrg.vocab.tidy_locations`)."""
    return tidy_locations(zone if side is None else location_name(side, zone) for side, zone in parts)


def combine(found: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Several extractors' (or sentences') locations as one: in order, specific over side-only, merged."""
    parts: list[tuple[str | None, str]] = []
    for names in found:
        for name in names:
            side, zone = split_location(name)
            parts.append((side, zone))
    return _finish(parts)


def locations_of_groups(found: Iterable[Group], pathology: str) -> tuple[str, ...]:
    parts: list[tuple[str | None, str]] = []
    for group in found:
        parts.extend(group.parts())
    return resolve(parts, pathology)
