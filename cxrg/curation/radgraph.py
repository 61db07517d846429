"""RadGraph-XL as a location extractor (the paper's choice), through the optional `radgraph` package.

The model is loaded offline from a local folder in the package's own layout
(`<dir>/radgraph-xl/{config.json, vocabulary/, weights.th}`), never downloaded by cxrg. Locations are the
sentence's "Anatomy::definitely present" entities: entities that touch or are linked by a "modify" relation
form one phrase ("left" + "lower" + "lobe"), which the shared anatomy parser maps to the 27 locations.
As in the paper, every anatomy entity of the sentence counts -- except when RadGraph-XL links an
observation naming the label to anatomy ("located_at"): then only that anatomy does, so that "right PICC
... small left apical pneumothorax" is not located on both sides.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxrg.curation.anatomy import Group, locations_of_groups, outside_list, parse_phrase
from cxrg.curation.mentions import mention_pattern
from cxrg.curation.query import SentenceQuery
from cxrg.errors import InputError, MissingWeightsError

ANATOMY_LABEL = "Anatomy::definitely present"


def anatomy_phrases(annotation: Mapping[str, Any], linked_to: str | None = None) -> list[str]:
    """The anatomy phrases of one RadGraph annotation ({"text", "entities": {id: entity}}), in order.

    With `linked_to` (a pathology), only the phrases that an observation naming that pathology is
    "located_at" -- when RadGraph-XL gives such a link; otherwise all of them.
    """
    entities = annotation.get("entities", {}) or {}
    anatomy = {key: e for key, e in entities.items() if e.get("label") == ANATOMY_LABEL}
    parent = {key: key for key in anatomy}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(a: str, b: str) -> None:
        parent[find(a)] = find(b)

    for key, entity in anatomy.items():
        for relation in entity.get("relations", []):
            if len(relation) == 2 and relation[0] == "modify" and str(relation[1]) in anatomy:
                union(key, str(relation[1]))
    ordered = sorted(anatomy, key=lambda k: (int(anatomy[k]["start_ix"]), int(anatomy[k]["end_ix"])))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if int(anatomy[b]["start_ix"]) == int(anatomy[a]["end_ix"]) + 1:
            union(a, b)
    wanted: set[str] | None = None
    if linked_to is not None:
        pattern = mention_pattern(linked_to)
        linked = {find(str(relation[1]))
                  for entity in entities.values()
                  if str(entity.get("label", "")).startswith("Observation::")
                  and pattern.search(str(entity.get("tokens", "")).lower())
                  for relation in entity.get("relations", [])
                  if len(relation) == 2 and relation[0] == "located_at" and str(relation[1]) in anatomy}
        wanted = linked or None
    phrases: dict[str, list[str]] = {}
    for key in ordered:
        root = find(key)
        if wanted is None or root in wanted:
            phrases.setdefault(root, []).append(str(anatomy[key]["tokens"]))
    return [" ".join(words) for words in phrases.values()]


def locations_from_annotation(annotation: Mapping[str, Any], pathology: str, mappings: str = "extended"
                              ) -> tuple[str, ...]:
    """The label's locations in one annotation; mappings="list" drops phrases naming an area outside the
    paper's location list (anatomy.OUTSIDE_LIST), as the paper does (App. I (c))."""
    found: list[Group] = []
    for phrase in anatomy_phrases(annotation, linked_to=pathology):
        if mappings == "list" and outside_list(phrase.split()):
            continue
        found.extend(parse_phrase(phrase))
    return locations_of_groups(found, pathology)


NO_ANATOMY = "RadGraph-XL tagged no anatomy (no ANAT-DP entity)"
OUTSIDE = "area outside the location list"
NOT_A_LOCATION = "RadGraph-XL anatomy is not one of the 27 locations"


def why_empty(annotation: Mapping[str, Any], pathology: str, mappings: str = "extended") -> str:
    """Why an annotation gives the label no location: the reason logged for a dropped phrase."""
    phrases = anatomy_phrases(annotation, linked_to=pathology)
    if not phrases:
        return NO_ANATOMY
    outside = sorted({w for p in phrases for w in outside_list(p.split())})
    if mappings == "list" and outside:
        return f"{OUTSIDE} ({', '.join(outside)})"
    return f"{NOT_A_LOCATION} ({'; '.join(phrases)})"


class RadGraphExtractor:
    """RadGraph-XL from a local folder; loaded on first use."""

    name = "radgraph"

    def __init__(self, model_dir: Path, device: str = "cpu", model_type: str = "radgraph-xl",
                 mappings: str = "extended") -> None:
        self.model_dir = Path(model_dir)
        self.mappings = mappings
        self._last: dict[str, dict[str, Any]] = {}
        self.device = device
        self.model_type = model_type
        self._model: Any = None

    def load(self) -> Any:
        if self._model is not None:
            return self._model
        folder = self.model_dir / self.model_type
        if not (folder / "config.json").is_file():
            raise MissingWeightsError(f"RadGraph-XL config.json not found in {folder}",
                                      hint="unpack radgraph-xl.tar.gz there, or use --extractor rules")
        try:
            from radgraph import RadGraph
        except ImportError as exc:
            raise MissingWeightsError("the radgraph package is not installed",
                                      hint="pip install 'cxrg[radgraph]'") from exc
        cuda = -1
        if self.device.startswith("cuda"):
            cuda = int(self.device.split(":")[1]) if ":" in self.device else 0
        # RadGraph prints progress on stdout; cxrg keeps stdout for data.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                self._model = RadGraph(model_type=self.model_type, model_cache_dir=str(self.model_dir),
                                       cuda=cuda)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise InputError(f"RadGraph-XL could not be loaded from {folder}: {exc}",
                                 hint="check config.json, vocabulary/ and weights.th (and that the BERT "
                                      "named in config.json is available offline)") from exc
        return self._model

    def annotate(self, sentences: Sequence[str]) -> list[dict[str, Any]]:
        """RadGraph's raw annotation of each sentence."""
        if not sentences:
            return []
        model = self.load()
        with contextlib.redirect_stdout(io.StringIO()):
            result = model(list(sentences))
        return [result.get(str(k), {}) for k in range(len(sentences))]

    def locations(self, queries: Sequence[SentenceQuery]) -> list[tuple[str, ...]]:
        annotations = self.annotate([q.sentence for q in queries])
        self._last = {q.sentence: a for q, a in zip(queries, annotations, strict=True)}
        return [locations_from_annotation(a, q.pathology, self.mappings)
                for q, a in zip(queries, annotations, strict=True)]

    def why_empty(self, query: SentenceQuery) -> str:
        """Why the last `locations` call found nothing for `query` (a reason for the skip log)."""
        annotation = self._last.get(query.sentence)
        return why_empty(annotation, query.pathology, self.mappings) if annotation is not None else ""
