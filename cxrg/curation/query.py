"""What an extractor is asked (one sentence and its label) and the interface every extractor has.

Its own module so that the extractors (rules, RadGraph-XL, hybrid) and their chooser import it without
importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cxrg.curation.rules import Analysis


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
