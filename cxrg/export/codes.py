"""Coded concepts for a heatmap's segments: what was looked for (finding), where (anatomy, side).

Every code comes from pydicom's copy of the DICOM code dictionaries (`pydicom.sr.codedict.codes`, built from
DICOM PS3.16), looked up by keyword, so no number is typed here. A pathology without an entry there gets
the generic SNOMED CT "Finding" as its type and keeps its name in the segment's label and description:
no code is guessed. The table, as docs/viewer.md states it (tests hold the two equal):

| pathology        | segmented property type          | anatomic region  |
|------------------|----------------------------------|------------------|
| Pleural Effusion | SCT 60046008 Pleural effusion    | SCT 3120008 Pleura |
| Pneumothorax     | SCT 36118008 Pneumothorax        | SCT 3120008 Pleura |
| Cardiomegaly     | SCT 287272002 Cardiomegaly       | SCT 80891009 Heart |
| Edema            | SCT 19242006 Pulmonary edema     | SCT 39607008 Lung  |
| Pneumonia, Lung Opacity, Atelectasis, Consolidation | SCT 404684003 Finding | SCT 39607008 Lung |

Category: SCT 49755003 Morphologically Abnormal Structure. Side: the prompt's left / right / bilateral
(bibasilar is bilateral, lingular is left) as an Anatomic Region Modifier: SCT 7771000 Left, SCT 24028007
Right, SCT 51440002 Bilateral; several sides, or none, give no modifier. A "pleural" location puts the
region in the pleura whatever the finding. A phrase that cannot be read as a vocabulary prompt
(cxrg.phrases) gets the generic type and no anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FINDING_KEYWORDS = {
    "Pleural Effusion": "PleuralEffusion",
    "Pneumothorax": "Pneumothorax",
    "Cardiomegaly": "Cardiomegaly",
    "Edema": "PulmonaryEdema",
}
"""Pathology -> keyword of its SNOMED CT concept in pydicom's dictionary; the others have none there."""
ANATOMY_KEYWORDS = {
    "Pleural Effusion": "Pleura", "Pneumothorax": "Pleura", "Cardiomegaly": "Heart", "Edema": "Lung",
    "Pneumonia": "Lung", "Lung Opacity": "Lung", "Atelectasis": "Lung", "Consolidation": "Lung",
}
SIDE_KEYWORDS = {"left": "Left", "right": "Right", "bilateral": "Bilateral"}
CATEGORY_KEYWORD = "MorphologicallyAbnormalStructure"
GENERIC_TYPE_KEYWORD = "Finding"
ALGORITHM_FAMILY_KEYWORD = "ArtificialIntelligence"  # DCM 123110, from CID 7162


def sct(keyword: str) -> Any:
    """A SNOMED CT code from pydicom's dictionary (a KeyError here is a bug in the tables above)."""
    from pydicom.sr.codedict import codes

    return getattr(codes.SCT, keyword)


def dcm(keyword: str) -> Any:
    from pydicom.sr.codedict import codes

    return getattr(codes.DCM, keyword)


@dataclass(frozen=True)
class SegmentCodes:
    category: Any
    property_type: Any
    anatomy: Any | None
    side: Any | None
    pathology: str | None
    """The canonical pathology read from the prompt, or None when it could not be read."""


def read_prompt(prompt: str) -> Any | None:
    """The structured Prompt of a text (exact vocabulary first, then cxrg.phrases' reading), or None."""
    from cxrg.errors import CxrgError
    from cxrg.phrases import normalise
    from cxrg.vocab import Prompt

    try:
        return Prompt.parse(prompt)
    except CxrgError:
        pass
    try:
        return normalise(prompt).structured
    except CxrgError:
        return None


def side_of(locations: tuple[str, ...]) -> str | None:
    """The one side all locations share ("left", "right", "bilateral"), or None."""
    from cxrg.vocab import split_location

    sides: set[str | None] = set()
    for location in locations:
        side, zone = split_location(location)
        if zone == "lingular":
            side = "left"
        if side is not None:
            sides.add(side)
        elif zone != "cardiomegaly":
            sides.add(None)
    if sides == {"left", "right"}:
        return "bilateral"
    return sides.pop() if len(sides) == 1 else None


def segment_codes(prompt: str) -> SegmentCodes:
    """The codes of a prompt's segments (module docstring)."""
    structured = read_prompt(prompt)
    category = sct(CATEGORY_KEYWORD)
    if structured is None:
        return SegmentCodes(category, sct(GENERIC_TYPE_KEYWORD), None, None, None)
    pathology = structured.pathology
    keyword = FINDING_KEYWORDS.get(pathology)
    anatomy = ANATOMY_KEYWORDS[pathology]
    if any(location.endswith("pleural") for location in structured.locations):
        anatomy = "Pleura"
    side = side_of(structured.locations) if anatomy != "Heart" else None
    return SegmentCodes(category, sct(keyword or GENERIC_TYPE_KEYWORD), sct(anatomy),
                        sct(SIDE_KEYWORDS[side]) if side else None, pathology)


def code_table() -> list[tuple[str, str, str]]:
    """(pathology, 'SCT value meaning' of its type, of its region), for the docs and their test."""
    from cxrg.vocab import PATHOLOGIES

    def text(code: Any) -> str:
        return f"{code.scheme_designator} {code.value} {code.meaning}"

    rows = []
    for pathology in PATHOLOGIES:
        rows.append((pathology, text(sct(FINDING_KEYWORDS.get(pathology, GENERIC_TYPE_KEYWORD))),
                     text(sct(ANATOMY_KEYWORDS[pathology]))))
    return rows
