"""Reports -> "{location} {pathology}" samples, with every dropped report, label and sentence accounted for.

For each report: the label rule (by default exactly one of the 8 pathologies positive, as in the paper),
the text (a bad file is skipped with its reason), the findings and impression sections, their sentences.
For each label: the sentences that mention it, minus those where it is negated, resolved or uncertain,
then the extractor's locations. A report gives one sample per label (the union of its sentences'
locations, merged bilaterally across sentences) or, with unit="sentence", one per sentence.

Counts add up at every level: reports in = reports kept + each report skip reason; labels likewise;
sentences examined = sentences kept + each sentence skip reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxrg.curation.anatomy import combine
from cxrg.curation.mentions import NEGATION_SCOPES, PRESENT, sentence_verdict
from cxrg.curation.query import Extractor, SentenceQuery
from cxrg.curation.reports import Report, ReportError, Skip, read_text
from cxrg.curation.rules import analyse, mentions_label
from cxrg.curation.text import DEFAULT_SECTIONS, sections, sentences
from cxrg.errors import UsageError
from cxrg.vocab import Prompt, canonical

LABEL_RULES = ("one", "all")
UNITS = ("report", "sentence")

# Skip reasons that the pipeline itself gives (readers add theirs).
NO_LABEL = "no positive label among the 8 pathologies"
MANY_LABELS = "more than one of the 8 labels positive"
NO_SECTIONS = "no findings or impression section"
NO_SENTENCES = "no sentences"
NO_MENTION = "no mention of the label"
NO_LOCATION = "no location"
SENTENCE_REASONS = {"negated": "negated", "resolved": "resolved", "uncertain": "uncertain"}
LABEL_REASONS = {"no mention": "no sentence mentions the label", "negated": "label only negated",
                 "resolved": "label only resolved", "uncertain": "label only uncertain",
                 "no location": "no location found"}


@dataclass
class Sample:
    sample_id: str
    report_id: str
    image_id: str
    image_path: str
    pathology: str
    locations: tuple[str, ...]
    prompt: str
    sentences: list[str]
    sentence_indices: list[int]
    extractor: str


@dataclass
class Tally:
    """Inputs at one level, how many were kept, and why the others were not."""

    total: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def adds_up(self) -> bool:
        return self.total == self.kept + sum(self.skipped.values())

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "kept": self.kept, "skipped": dict(self.skipped.most_common())}


@dataclass
class CurationResult:
    samples: list[Sample]
    skips: list[Skip]
    reports: Tally
    labels: Tally
    sentences: Tally
    extractor: str
    label_rule: str
    unit: str

    def adds_up(self) -> bool:
        return self.reports.adds_up() and self.labels.adds_up() and self.sentences.adds_up()


def slug(pathology: str) -> str:
    return pathology.lower().replace(" ", "_")


class Curator:
    """Runs the pipeline over a stream of reports (or reader skips) with one extractor."""

    def __init__(self, extractor: Extractor, label_rule: str = "one", unit: str = "report",
                 section_names: Sequence[str] = DEFAULT_SECTIONS, negation: str = "mention",
                 style: str = "cxrg") -> None:
        """negation: "sentence" (the paper: any negation or resolution word in the sentence drops it, no
        uncertainty filter) or "mention" (cxrg: per mention, within its clause, plus uncertainty);
        style: the prompt style (cxrg.vocab.STYLES; the protocol's prompt_style)."""
        if label_rule not in LABEL_RULES:
            raise UsageError(f"unknown label rule {label_rule!r}",
                             hint=f"choose one of: {', '.join(LABEL_RULES)}")
        if unit not in UNITS:
            raise UsageError(f"unknown unit {unit!r}", hint=f"choose one of: {', '.join(UNITS)}")
        if negation not in NEGATION_SCOPES:
            raise UsageError(f"unknown negation scope {negation!r}",
                             hint=f"choose one of: {', '.join(NEGATION_SCOPES)}")
        self.negation = negation
        self.style = style
        self.extractor = extractor
        self.label_rule = label_rule
        self.unit = unit
        self.section_names = tuple(section_names)
        self.samples: list[Sample] = []
        self.skips: list[Skip] = []
        self.reports = Tally()
        self.labels = Tally()
        self.sentences = Tally()

    def run(self, items: Iterable[Report | Skip], progress: Callable[[int], None] | None = None
            ) -> CurationResult:
        for item in items:
            self.add(item)
            if progress is not None:
                progress(1)
        return self.result()

    def result(self) -> CurationResult:
        return CurationResult(self.samples, self.skips, self.reports, self.labels, self.sentences,
                              self.extractor.name, self.label_rule, self.unit)

    # --- one report ---------------------------------------------------------------------------------

    def _skip_report(self, report_id: str, reason: str, detail: str = "") -> None:
        self.reports.skipped[reason] += 1
        self.skips.append(Skip("report", report_id, reason, detail=detail))

    def add(self, item: Report | Skip) -> None:
        self.reports.total += 1
        if isinstance(item, Skip):
            self._skip_report(item.report_id, item.reason, item.detail)
            return
        report = item
        if not report.labels:
            detail = "; ".join(report.other_labels)
            self._skip_report(report.report_id, NO_LABEL, detail)
            return
        if self.label_rule == "one" and len(report.labels) > 1:
            self._skip_report(report.report_id, MANY_LABELS, "; ".join(report.labels))
            return
        try:
            text = read_text(report)
        except ReportError as exc:
            self._skip_report(report.report_id, str(exc), str(report.path or ""))
            return
        if report.require_sections:
            found = sections(text)
            bodies = [found[name] for name in self.section_names if name in found]
            if not bodies:
                self._skip_report(report.report_id, NO_SECTIONS, ", ".join(found) or "no headers")
                return
        else:
            bodies = [text]
        sents = [s for body in bodies for s in sentences(body)]
        if not sents:
            self._skip_report(report.report_id, NO_SENTENCES)
            return
        reasons = []
        for pathology in report.labels:
            reason = self._label(report, pathology, sents)
            if reason is not None:
                reasons.append(reason)
        if len(reasons) == len(report.labels):
            reason = reasons[0] if len(set(reasons)) == 1 else "no label kept (reasons differ)"
            self._skip_report(report.report_id, reason, "; ".join(report.labels))
        else:
            self.reports.kept += 1

    def _label(self, report: Report, pathology: str, sents: list[str]) -> str | None:
        """Curate one label of a report; the reason it gave nothing, or None if it gave samples."""
        self.labels.total += 1
        queries: list[SentenceQuery] = []
        indices: list[int] = []
        verdicts: set[str] = set()
        for index, sentence in enumerate(sents):
            self.sentences.total += 1
            if not mentions_label(sentence, pathology):
                self._skip_sentence(report, pathology, index, NO_MENTION, sentence)
                continue
            analysis = analyse(sentence, pathology)
            verdict = judge(analysis, self.negation)
            verdicts.add(verdict)
            if verdict != PRESENT:
                reason = SENTENCE_REASONS.get(verdict, verdict)
                self._skip_sentence(report, pathology, index, reason, sentence)
                continue
            queries.append(SentenceQuery(sentence, pathology, analysis))
            indices.append(index)
        found = self.extractor.locations(queries) if queries else []
        kept: list[tuple[int, str, tuple[str, ...]]] = []
        for query, index, locations in zip(queries, indices, found, strict=True):
            if locations:
                kept.append((index, query.sentence, locations))
                self.sentences.kept += 1
            else:
                self._skip_sentence(report, pathology, index, NO_LOCATION, query.sentence)
        if not kept:
            if queries:
                key = "no location"
            else:
                key = next((v for v in ("resolved", "negated", "uncertain") if v in verdicts), "no mention")
            reason = LABEL_REASONS[key]
            self.labels.skipped[reason] += 1
            if self.label_rule == "all":
                self.skips.append(Skip("label", report.report_id, reason, pathology=pathology))
            return reason
        self.labels.kept += 1
        groups = [kept] if self.unit == "report" else [[one] for one in kept]
        for group in groups:
            prompt = canonical(Prompt(combine(locs for _, _, locs in group), pathology), self.style)
            sample_id = f"{report.report_id}:{slug(pathology)}"
            if self.unit == "sentence":
                sample_id += f":{group[0][0]}"
            self.samples.append(Sample(
                sample_id=sample_id, report_id=report.report_id, image_id=report.image_id,
                image_path=report.image_path, pathology=pathology, locations=prompt.locations,
                prompt=prompt.format(), sentences=[s for _, s, _ in group],
                sentence_indices=[i for i, _, _ in group], extractor=self.extractor.name))
        return None

    def _skip_sentence(self, report: Report, pathology: str, index: int, reason: str, sentence: str) -> None:
        self.sentences.skipped[reason] += 1
        self.skips.append(Skip("sentence", report.report_id, reason, pathology=pathology,
                               sentence_index=index, detail=sentence))


def judge(analysis: Any, negation: str) -> str:
    """The sentence's verdict under `negation` ("mention": per mention; "sentence": the paper's filter, and
    a kept sentence's mentions all count as asserted, so the rules locate them)."""
    if negation == "mention":
        return analysis.verdict()
    verdict = sentence_verdict(analysis.toks)
    if verdict == PRESENT:
        analysis.status = {k: PRESENT for k in analysis.targets}
    return verdict


def curate_sentence(sentence: str, pathology: str, extractor: Extractor, negation: str = "mention",
                    style: str = "cxrg") -> tuple[str, tuple[str, ...]]:
    """(verdict, locations) of one sentence: "no mention", "negated", ..., or "present" with locations
    (canonical, as the pipeline writes them)."""
    if not mentions_label(sentence, pathology):
        return "no mention", ()
    analysis = analyse(sentence, pathology)
    verdict = judge(analysis, negation)
    if verdict != PRESENT:
        return verdict, ()
    locations = extractor.locations([SentenceQuery(sentence, pathology, analysis)])[0]
    return verdict, canonical(Prompt(locations, pathology), style).locations if locations else ()
