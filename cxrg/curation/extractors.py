"""Location extractors behind one interface: rules, RadGraph-XL, and both merged (hybrid).

An extractor gets sentences already known to assert the label (the filter ran first, the same for all
extractors) and returns each sentence's locations as names of `cxrg.vocab.LOCATIONS`, merged bilaterally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cxrg.curation.anatomy import MAPPINGS, combine, outside_list
from cxrg.curation.query import Extractor, SentenceQuery
from cxrg.curation.rules import analyse, rule_locations
from cxrg.errors import MissingWeightsError, UsageError

EXTRACTORS = ("auto", "rules", "radgraph", "hybrid")
__all__ = ["EXTRACTORS", "Extractor", "HybridExtractor", "RulesExtractor", "SentenceQuery",
           "make_extractor"]


class RulesExtractor:
    """Deterministic rules (cxrg.curation.rules): no weights, a few thousand reports per second.

    mappings="list" (the paper protocol) ignores areas outside the paper's location list
    (`anatomy.OUTSIDE_LIST`, e.g. "retrocardiac"); "extended" maps them (retrocardiac = left lower)."""

    name = "rules"

    def __init__(self, mappings: str = "extended") -> None:
        self.mappings = check_mappings(mappings)

    def locations(self, queries: Sequence[SentenceQuery]) -> list[tuple[str, ...]]:
        out = []
        for query in queries:
            analysis = query.analysis or analyse(query.sentence, query.pathology)
            if self.mappings == "list":
                kept = [g for g in analysis.groups
                        if not outside_list(t.text for t in analysis.toks[g.start:g.end])]
                if len(kept) != len(analysis.groups):
                    analysis = replace(analysis, groups=kept)
            found = rule_locations(analysis)
            if not found and query.whole:
                found = rule_locations(analysis, whole=True)
            out.append(found)
        return out


def check_mappings(mappings: str) -> str:
    if mappings not in MAPPINGS:
        raise UsageError(f"unknown location mappings {mappings!r}", hint=f"choose {' or '.join(MAPPINGS)}")
    return mappings


class HybridExtractor:
    """RadGraph-XL and the rules together: the union of their locations, merged."""

    name = "hybrid"

    def __init__(self, radgraph: Extractor, rules: Extractor | None = None) -> None:
        self.radgraph = radgraph
        self.rules = rules or RulesExtractor(getattr(radgraph, "mappings", "extended"))

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


def make_extractor(name: str, radgraph_dir: Path | None = None, device: str = "cpu",
                   mappings: str = "extended") -> tuple[Extractor, str]:
    """The extractor called `name`, and a note for the user ("" if none).

    auto: hybrid when RadGraph-XL is installed with its weights, else rules (with a note saying why).
    `mappings`: "list" drops areas outside the paper's location list, "extended" maps them (see
    RulesExtractor).
    """
    if name not in EXTRACTORS:
        raise UsageError(f"unknown extractor {name!r}", hint=f"choose one of: {', '.join(EXTRACTORS)}")
    check_mappings(mappings)
    if name == "rules":
        return RulesExtractor(mappings), ""
    model_dir = Path(radgraph_dir) if radgraph_dir else default_radgraph_dir()
    usable, why = radgraph_available(model_dir)
    if name == "auto":
        if not usable:
            return RulesExtractor(mappings), f"using the rules extractor: {why}"
        name = "hybrid"
    if not usable:
        raise MissingWeightsError(
            f"--extractor {name} needs RadGraph-XL: {why}",
            hint="download radgraph-xl.tar.gz from the Hugging Face repo StanfordAIMI/RRG_scorers and unpack "
                 f"it into {model_dir / 'radgraph-xl'} (or pass --radgraph-dir), or use --extractor rules")
    from cxrg.curation.radgraph import RadGraphExtractor

    model = RadGraphExtractor(model_dir, device=device, mappings=mappings)
    if name == "radgraph":
        return model, ""
    return HybridExtractor(model), ""
