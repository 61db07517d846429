"""Location extractors behind one interface: rules, RadGraph-XL, and both merged (hybrid).

An extractor gets sentences already known to assert the label (the filter ran first, the same for all
extractors) and returns each sentence's locations as names of `cxrg.vocab.LOCATIONS`, merged bilaterally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cxrg.curation.anatomy import combine
from cxrg.curation.rules import Analysis, analyse, rule_locations
from cxrg.errors import MissingWeightsError, UsageError

EXTRACTORS = ("auto", "rules", "radgraph", "hybrid")


@dataclass
class SentenceQuery:
    """One sentence and the label it is about."""

    sentence: str
    pathology: str
    analysis: Analysis | None = None
    """The filter's analysis of the sentence, reused by the rules."""
    whole: bool = False
    """The sentence is a phrase about the finding (MS-CXR): its locations are the label's even when the
    label is named another way ("right lower lobe airspace process" for pneumonia)."""


class Extractor(Protocol):
    name: str

    def locations(self, queries: Sequence[SentenceQuery]) -> list[tuple[str, ...]]:
        """Locations of each query's label in its sentence (empty tuple: none found)."""
        ...


class RulesExtractor:
    """Deterministic rules (cxrg.curation.rules): no weights, a few thousand reports per second."""

    name = "rules"

    def locations(self, queries: Sequence[SentenceQuery]) -> list[tuple[str, ...]]:
        out = []
        for query in queries:
            analysis = query.analysis or analyse(query.sentence, query.pathology)
            found = rule_locations(analysis)
            if not found and query.whole:
                found = rule_locations(analysis, whole=True)
            out.append(found)
        return out


class HybridExtractor:
    """RadGraph-XL and the rules together: the union of their locations, merged."""

    name = "hybrid"

    def __init__(self, radgraph: Extractor, rules: Extractor | None = None) -> None:
        self.radgraph = radgraph
        self.rules = rules or RulesExtractor()

    def locations(self, queries: Sequence[SentenceQuery]) -> list[tuple[str, ...]]:
        from_model = self.radgraph.locations(queries)
        from_rules = self.rules.locations(queries)
        return [combine([a, b]) for a, b in zip(from_model, from_rules, strict=True)]


def default_radgraph_dir() -> Path:
    """$CXRG_HOME/radgraph (default ~/.cache/cxrg/radgraph): holds radgraph-xl/{config.json, ...}."""
    from cxrg.config import home as cxrg_home

    home = cxrg_home()
    return home / "radgraph"


RADGRAPH_FILES = ("config.json", "weights.th", "vocabulary")


def radgraph_available(model_dir: Path) -> tuple[bool, str]:
    """(usable, why not): the radgraph package is installed and model_dir/radgraph-xl is complete."""
    import importlib.util

    if importlib.util.find_spec("radgraph") is None:
        return False, "the radgraph package is not installed (pip install 'cxrg[radgraph]')"
    missing = [name for name in RADGRAPH_FILES if not (Path(model_dir) / "radgraph-xl" / name).exists()]
    if missing:
        return False, f"RadGraph-XL weights not found in {Path(model_dir) / 'radgraph-xl'} " \
                      f"(missing {', '.join(missing)})"
    return True, ""


def make_extractor(name: str, radgraph_dir: Path | None = None, device: str = "cpu") -> tuple[Extractor, str]:
    """The extractor called `name`, and a note for the user ("" if none).

    auto: hybrid when RadGraph-XL is installed with its weights, else rules (with a note saying why).
    """
    if name not in EXTRACTORS:
        raise UsageError(f"unknown extractor {name!r}", hint=f"choose one of: {', '.join(EXTRACTORS)}")
    if name == "rules":
        return RulesExtractor(), ""
    model_dir = Path(radgraph_dir) if radgraph_dir else default_radgraph_dir()
    usable, why = radgraph_available(model_dir)
    if name == "auto":
        if not usable:
            return RulesExtractor(), f"using the rules extractor: {why}"
        name = "hybrid"
    if not usable:
        raise MissingWeightsError(
            f"--extractor {name} needs RadGraph-XL: {why}",
            hint="download radgraph-xl.tar.gz from the Hugging Face repo StanfordAIMI/RRG_scorers and unpack "
                 f"it into {model_dir / 'radgraph-xl'} (or pass --radgraph-dir), or use --extractor rules")
    from cxrg.curation.radgraph import RadGraphExtractor

    model = RadGraphExtractor(model_dir, device=device)
    if name == "radgraph":
        return model, ""
    return HybridExtractor(model), ""
