"""Report curation: free-text radiology reports -> "{location} {pathology}" training and test sets.

text (sections, sentences, tokens) -> mentions (the label, other findings, negation and resolution) ->
extractors (rules, RadGraph-XL, hybrid) -> anatomy (the 27 locations) -> pipeline (samples and skips) ->
outputs (manifest, skip log, summary, figure). mscxr rewrites MS-CXR into MS-CXR-loc; goldset holds the
labelled sentences the extractors are scored on. Importing this package never loads torch.
"""

from cxrg.curation.extractors import (
    EXTRACTORS,
    Extractor,
    HybridExtractor,
    RulesExtractor,
    SentenceQuery,
    make_extractor,
)
from cxrg.curation.pipeline import CurationResult, Curator, Sample, curate_sentence
from cxrg.curation.reports import Report, Skip, read_generic, read_iu, read_mimic

__all__ = ["EXTRACTORS", "CurationResult", "Curator", "Extractor", "HybridExtractor", "Report",
           "RulesExtractor", "Sample", "SentenceQuery", "Skip", "curate_sentence", "make_extractor",
           "read_generic", "read_iu", "read_mimic"]


def run(*args, **kwargs):
    """`cxrg curate` as a call (cxrg.curation.command.run), imported lazily."""
    from cxrg.curation.command import run as _run

    return _run(*args, **kwargs)
