"""The fixed vocabulary: 27 locations, 8 pathologies, their synonyms, and the structured prompt.

Locations
    ``{left, right, bilateral} x {"", apical, upper, middle, lower, costophrenic, pleural, base}`` with
    "bilateral base" written "bibasilar", then ``lingular``, ``cardiomegaly`` and ``pulmonary``: 27 in all.
    ``LOCATIONS`` lists them side by side (all "left ..." first, then "right ...", then "bilateral ...",
    each in the zone order above), then the three unpaired ones. The order is fixed: code and files may
    index by it. Sides are the *patient's*: on a frontal radiograph the patient's left is the image's right.

Pathologies
    ``PATHOLOGIES`` holds the 8 canonical names (CheXpert/MS-CXR spelling, e.g. "Pleural Effusion");
    ``PATHOLOGY_TEXT`` the lowercase words used in prompts ("pleural effusion"); ``SYNONYMS`` the surface
    forms (plurals, synonyms) that count as a mention of the label when curating reports.

Prompt grammar
    ``prompt := [location (" and " location)* " "] pathology_text``

    * the locations keep the order they were given in; a location may not repeat;
    * zero locations are allowed ("pneumothorax" is ``Prompt((), "Pneumothorax")``);
    * cardiomegaly has one location, the heart region ``cardiomegaly``, written once: the prompt
      "cardiomegaly" is ``Prompt(("cardiomegaly",), "Cardiomegaly")``, and ``Prompt((), "Cardiomegaly")``
      is the same prompt (its location is filled in). The older text "cardiomegaly cardiomegaly" still
      parses, to the same prompt, so old manifests keep working;
    * parsing strips the pathology text from the end (no pathology text is a suffix of another), then splits
      the rest on " and " (no location contains the word "and"), so "left pleural pleural effusion" is
      (left pleural) + Pleural Effusion and "left pleural effusion" is (left) + Pleural Effusion. Free text
      goes through `cxrg.phrases.normalise` instead, which reads "left pleural effusion" as a radiologist
      does (an effusion in the left pleural space).

    ``Prompt.parse`` is the exact inverse of ``Prompt.format`` for every valid prompt; it also accepts any
    letter case and runs of whitespace, but no other spelling (use the canonical location names).

Canonical prompts
    ``canonical(prompt)`` applies the location rules that hold for every producer of prompts (curation,
    MS-CXR-loc, VinDr, phantoms; docs/curation.md, "Reading a phrase"), and ``format_prompt(locations,
    pathology)`` is the one function they all write prompts with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cxrg.errors import InputError

SIDES: tuple[str, ...] = ("left", "right", "bilateral")
ZONES: tuple[str, ...] = ("", "apical", "upper", "middle", "lower", "costophrenic", "pleural", "base")
UNPAIRED: tuple[str, ...] = ("lingular", "cardiomegaly", "pulmonary")


def location_name(side: str, zone: str) -> str:
    """Side + zone as a location: ("left", "lower") -> "left lower"; ("bilateral", "base") -> "bibasilar"."""
    if side not in SIDES or zone not in ZONES:
        raise InputError(f"no location for side {side!r} and zone {zone!r}",
                         hint=f"sides: {', '.join(SIDES)}; zones: {', '.join(z or '(none)' for z in ZONES)}")
    if side == "bilateral" and zone == "base":
        return "bibasilar"
    return f"{side} {zone}".strip()


LOCATIONS: tuple[str, ...] = tuple(location_name(s, z) for s in SIDES for z in ZONES) + UNPAIRED

_SIDE_ZONE: dict[str, tuple[str, str]] = {location_name(s, z): (s, z) for s in SIDES for z in ZONES}


def split_location(location: str) -> tuple[str | None, str]:
    """(side, zone) of a location: "bibasilar" -> ("bilateral", "base"); unpaired ones -> (None, location)."""
    if location in _SIDE_ZONE:
        return _SIDE_ZONE[location]
    if location in UNPAIRED:
        return None, location
    raise _unknown_location(location)


PATHOLOGIES: tuple[str, ...] = (
    "Pneumonia", "Pneumothorax", "Pleural Effusion", "Lung Opacity",
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
)
PATHOLOGY_TEXT: dict[str, str] = {name: name.lower() for name in PATHOLOGIES}

# Words that count as a mention of the label in a report sentence (lowercase, whole words or phrases).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "Pneumonia": ("pneumonia", "pneumonias", "opacity", "opacities", "consolidation", "consolidations",
                  "infiltrate", "infiltrates"),
    "Pneumothorax": ("pneumothorax", "pneumothoraces", "pneumothoraxes"),
    "Pleural Effusion": ("pleural effusion", "pleural effusions", "effusion", "effusions", "pleural fluid"),
    "Lung Opacity": ("lung opacity", "lung opacities", "opacity", "opacities", "opacification",
                     "opacifications"),
    "Atelectasis": ("atelectasis", "atelectases", "atelectatic"),
    "Cardiomegaly": ("cardiomegaly", "enlarged heart", "heart is enlarged", "enlarged cardiac silhouette",
                     "cardiac silhouette is enlarged", "cardiac enlargement"),
    "Consolidation": ("consolidation", "consolidations", "consolidative"),
    "Edema": ("edema", "oedema", "pulmonary edema", "pulmonary oedema", "vascular congestion",
              "pulmonary congestion", "interstitial edema"),
}

# Dataset spellings of the labels (CheXpert, MIMIC-CXR, MS-CXR, VinDr-CXR, NIH) -> canonical name.
_PATHOLOGY_ALIASES: dict[str, str] = {
    **{name.lower(): name for name in PATHOLOGIES},
    "effusion": "Pleural Effusion",
    "opacity": "Lung Opacity",
    "oedema": "Edema",
    "pulmonary edema": "Edema",
}


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[_\-]+", " ", text).lower().split())


def canonical_pathology(name: str) -> str:
    """The canonical name of a pathology label, whatever the dataset's spelling.

    Case, underscores and hyphens do not matter: "pleural_effusion", "Pleural effusion" (VinDr),
    "PLEURAL EFFUSION" and "Effusion" (NIH) all give "Pleural Effusion".
    """
    key = _norm(str(name))
    if key not in _PATHOLOGY_ALIASES:
        raise InputError(f"unknown pathology {name!r}", hint=f"valid pathologies: {', '.join(PATHOLOGIES)}")
    return _PATHOLOGY_ALIASES[key]


def _unknown_location(text: str, where: str | None = None) -> InputError:
    return InputError(f"unknown location {text!r}", where=where,
                      hint=f"valid locations: {', '.join(LOCATIONS)}")


@dataclass(frozen=True)
class Prompt:
    """A structured prompt: where (0..n distinct locations, order kept) and what (a canonical pathology)."""

    locations: tuple[str, ...]
    pathology: str

    def __post_init__(self) -> None:
        locations = tuple(self.locations) if not isinstance(self.locations, str) else (self.locations,)
        for loc in locations:
            if loc not in LOCATIONS:
                raise _unknown_location(loc)
        if len(set(locations)) != len(locations):
            raise InputError(f"repeated location in {locations}", hint="name each location once")
        pathology = canonical_pathology(self.pathology)
        if pathology == "Cardiomegaly" and not locations:
            locations = ("cardiomegaly",)  # the heart is cardiomegaly's only place
        object.__setattr__(self, "locations", locations)
        object.__setattr__(self, "pathology", pathology)

    def format(self) -> str:
        """The prompt text, e.g. "left lower and right apical pleural effusion"; "cardiomegaly"."""
        if self.pathology == "Cardiomegaly" and self.locations == ("cardiomegaly",):
            return PATHOLOGY_TEXT["Cardiomegaly"]
        words = " and ".join(self.locations)
        return f"{words} {PATHOLOGY_TEXT[self.pathology]}".strip()

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> Prompt:
        """The Prompt whose ``format()`` is ``text`` (letter case and whitespace runs aside)."""
        norm = " ".join(str(text).lower().split())
        for name, words in PATHOLOGY_TEXT.items():
            if norm == words:
                return cls((), name)
            if norm.endswith(" " + words):
                head = norm[: -len(words) - 1]
                locations = tuple(head.split(" and "))
                for loc in locations:
                    if loc not in LOCATIONS:
                        raise _unknown_location(loc, where=f"prompt {text!r}")
                return cls(locations, name)
        raise InputError(f"prompt {text!r} does not end with a pathology",
                         hint="write '<location> [and <location> ...] <pathology>' with a pathology among: "
                              + ", ".join(PATHOLOGY_TEXT.values()))


def merge_bilateral(locations: Iterable[str]) -> tuple[str, ...]:
    """Merge symmetric pairs: {left X, right X} -> bilateral X ("bilateral base" is "bibasilar").

    The merged location takes the place of the first of the pair; repeats are dropped, and so is a one-sided
    location whose bilateral counterpart is already in the list. Other locations keep their order.
    """
    given = [loc for loc in locations]
    for loc in given:
        if loc not in LOCATIONS:
            raise _unknown_location(loc)
    present = set(given)
    out: list[str] = []
    for loc in given:
        side, zone = split_location(loc)
        if side in ("left", "right"):
            other = location_name("right" if side == "left" else "left", zone)
            bilateral = location_name("bilateral", zone)
            if other in present or bilateral in present:
                loc = bilateral
        if loc not in out:
            out.append(loc)
    return tuple(out)


_COVERS = {"left": ("left", "bilateral"), "right": ("right", "bilateral"), "bilateral": ("bilateral",)}


def tidy_locations(locations: Iterable[str]) -> tuple[str, ...]:
    """Locations as one finding's: repeats dropped, a side-only location dropped when a zone of that side is
    named ("left" + "left lower" -> "left lower"), "left" dropped next to "lingular" (the lingula is on the
    left), then symmetric pairs merged (`merge_bilateral`). Order is kept."""
    given = list(locations)
    parts = [split_location(loc) for loc in given]
    zoned = {side for side, zone in parts if side is not None and zone}
    names: list[str] = []
    for loc, (side, zone) in zip(given, parts, strict=True):
        if side is not None and not zone and any(s in zoned for s in _COVERS[side]):
            continue
        if loc not in names:
            names.append(loc)
    if "lingular" in names and "left" in names:
        names.remove("left")
    return merge_bilateral(names)


_PLEURAL_SPACE = ("Pleural Effusion", "Pneumothorax")


STYLES: tuple[str, ...] = ("cxrg", "paper")
"""Prompt styles of `canonical`: "cxrg" (the default: the rules below) or "paper" (the paper's prompts,
Appendix D and Figure 7: an effusion named by its side only stays at that side, ``left pleural effusion``;
Edema has exactly one location, ``pulmonary``). docs/curation.md, "Prompt styles"."""


def canonical(prompt: Prompt, style: str = "cxrg") -> Prompt:
    """The one reading of a structured prompt, shared by every producer and by `cxrg.phrases.normalise`.

    * Cardiomegaly is located at the heart (``cardiomegaly``) and nowhere else; the location
      ``cardiomegaly`` belongs to Cardiomegaly only.
    * ``pulmonary`` belongs to Edema only; for Edema a side-less ``bilateral`` is ``pulmonary``.
    * The zone ``pleural`` belongs to Pleural Effusion and Pneumothorax; elsewhere only its side is kept.
    * An effusion named by its side only is in that side's pleural space: (left) -> (left pleural).
      A pneumothorax named by its side only stays on that side (the atlas "pleural" is the lower zone,
      where air does not collect).
    * Then `tidy_locations` (side-only under a zone dropped, bilateral merge).

    ``canonical(canonical(p)) == canonical(p)`` for every prompt: the rules are applied until nothing
    changes (a merge can make another rule apply, e.g. right apical + left apical + bilateral).

    ``style="paper"`` differs in two rules only: an effusion named by its side only keeps the side
    ((left) stays (left): ``left pleural effusion``), and Edema is always at ``pulmonary``.
    """
    if style not in STYLES:
        raise InputError(f"unknown prompt style {style!r}", hint=f"choose one of: {', '.join(STYLES)}")
    for _ in range(8):
        again = _canonical_once(prompt, style)
        if again == prompt:
            break
        prompt = again
    return prompt


def _canonical_once(prompt: Prompt, style: str = "cxrg") -> Prompt:
    pathology = prompt.pathology
    if pathology == "Cardiomegaly":
        return Prompt(("cardiomegaly",), pathology)
    if pathology == "Edema" and style == "paper":  # the paper: Edema has exactly one location
        return Prompt(("pulmonary",), pathology)
    kept: list[str] = []
    for loc in prompt.locations:
        side, zone = split_location(loc)
        if loc == "cardiomegaly" or (loc == "pulmonary" and pathology != "Edema"):
            continue
        if zone == "pleural" and pathology not in _PLEURAL_SPACE and side is not None:
            loc = side
        if pathology == "Edema" and loc == "bilateral":
            loc = "pulmonary"
        kept.append(loc)
    names = tidy_locations(tidy_locations(kept))  # twice: a merge can cover a side-only location
    if pathology == "Edema" and "bilateral" in names:  # left + right merged into bilateral
        names = tidy_locations("pulmonary" if loc == "bilateral" else loc for loc in names)
    if pathology == "Pleural Effusion" and style == "cxrg":
        names = tidy_locations(location_name(side, "pleural") if side is not None and not zone else loc
                               for loc, (side, zone) in ((n, split_location(n)) for n in names))
    return Prompt(names, pathology)


def format_prompt(locations: Iterable[str], pathology: str, style: str = "cxrg") -> str:
    """THE prompt text for a finding at some locations: ``canonical(Prompt(...), style).format()``.

    Every producer of prompts (``cxrg curate``, MS-CXR-loc, VinDr synthetic prompts, phantoms) writes
    through this function, so one finding is one prompt everywhere.
    """
    return canonical(Prompt(tuple(locations), pathology), style).format()


def prompt_locations(text: str) -> tuple[str, ...]:
    """The atlas locations a prompt names; "cardiomegaly" alone means the cardiac silhouette."""
    prompt = Prompt.parse(text)
    if prompt.locations:
        return prompt.locations
    if prompt.pathology == "Cardiomegaly":
        return ("cardiomegaly",)
    raise InputError(f"prompt {text!r} names no location",
                     hint="the prior needs '<location> <pathology>', e.g. 'left lower pleural effusion'")
