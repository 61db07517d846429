"""Who is classified: positives with boxes and '{location} {pathology}' prompts, and healthy negatives.

Positives come from a grounding dataset (MS-CXR or MS-CXR-loc, or the generic CSV of `cxrg bench`): the
samples of the target pathology. Each is one run whose location prompt is its own phrase, which must be a
vocabulary prompt of that pathology (MS-CXR-loc phrases are; `cxrg curate --ms-cxr` rewrites MS-CXR).
Negatives are healthy images, each classified once per location-specific prompt ("left apical
pneumothorax", ...): one run per prompt, all of them in the negative pool.

An image is one job: it is read, encoded and noised once for all of its runs. A row that cannot become a
usable run is kept as a job with an error, so the counts in the summary add up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrg.bench.datasets import read_csv_rows, read_generic, read_ms_cxr
from cxrg.errors import InputError, UsageError
from cxrg.images import resolve_image
from cxrg.phrases import normalise
from cxrg.vocab import Prompt, canonical_pathology, format_prompt

POSITIVE_FORMATS = ("ms-cxr", "generic")
DEFAULT_NEGATIVE_LOCATIONS = ("left apical", "right apical", "left", "right")
MIMIC_VIEWS = ("PA", "AP")


@dataclass
class Run:
    """One classification of an image with one location prompt."""

    unit: str
    """Bootstrap unit: the positive sample's id, or the negative image's id."""
    label: int
    prompt: str
    boxes: np.ndarray | None = None
    """xyxy in original pixels (positives only)."""


@dataclass
class Job:
    """One image and its runs."""

    key: str
    """Image id: seeds the image's (t, eps) draws."""
    image_path: Path | None
    runs: list[Run]
    image_size: tuple[int, int] | None = None
    error: str = ""
    view: str = ""
    """ViewPosition (PA, AP, ...) when the metadata says it; matching negatives to positives uses it."""

    @property
    def kind(self) -> str:
        return "positive" if self.runs and self.runs[0].label == 1 else "negative"


@dataclass
class Cohort:
    positives: list[Job]
    negatives: list[Job]
    notes: list[str] = field(default_factory=list)


def location_prompts(locations: Sequence[str], pathology: str) -> list[str]:
    """'{location} {pathology}' for each location, written like every other producer of prompts."""
    return [format_prompt((loc,), pathology) for loc in locations]


def read_positives(path: Path, fmt: str, images: Path, pathology: str, pairs: str = "merged",
                   style: str = "cxrg") -> tuple[list[Job], list[str]]:
    """The dataset's samples of `pathology`, grouped by image; other classes are counted in the notes.
    `pairs`: MS-CXR-loc phrases that became one prompt are one run each ("phrase") or one run ("merged");
    `style`: the prompt style the phrases are read into (the protocol's prompt_style)."""
    if fmt not in POSITIVE_FORMATS:
        raise UsageError(f"unknown positives format {fmt!r}", hint=f"choose {' or '.join(POSITIVE_FORMATS)}")
    if not Path(images).is_dir():
        raise UsageError(f"images folder not found: {images}", hint="check --images")
    dataset = read_ms_cxr(path, images, pairs=pairs) if fmt == "ms-cxr" else read_generic(path, images)
    jobs: dict[object, Job] = {}
    other: dict[str, int] = {}
    for sample in dataset.samples:
        if not _is_target(sample.category, sample.prompt, pathology):
            other[sample.category] = other.get(sample.category, 0) + 1
            continue
        error = sample.error
        prompt = sample.prompt
        if not error:
            try:  # the one reading of a phrase (cxrg.phrases), with the class as the pathology
                parsed = normalise(sample.prompt, pathology=pathology, style=style).structured
                if parsed.pathology != pathology or not parsed.locations:
                    raise InputError(f"not a '<location> {pathology.lower()}' prompt")
                prompt = parsed.format()
            except InputError as exc:
                error = (f"phrase {sample.prompt!r}: {exc.what}; rewrite MS-CXR into MS-CXR-loc with "
                         "`cxrg curate --ms-cxr`")
        image_key = sample.sample_id.rsplit(":", 1)[0]
        run = Run(sample.sample_id, 1, prompt, sample.boxes)
        group = (sample.image_path, sample.image_size) if not error else sample.sample_id
        if error or group not in jobs:
            jobs[group] = Job(image_key, sample.image_path, [], sample.image_size, error)
        jobs[group].runs.append(run)
    notes = [f"positives: {n} sample(s) of class {c!r} left out (not {pathology})"
             for c, n in sorted(other.items())]
    return list(jobs.values()), notes


def _is_target(category: str, prompt: str, pathology: str) -> bool:
    """A sample of the target class: by its category, or by its prompt when the category is absent."""
    if category in ("", "all"):
        try:
            return Prompt.parse(prompt).pathology == pathology
        except InputError:
            return True  # no class to go by: kept, and its prompt error is reported
    try:
        return canonical_pathology(category) == pathology
    except InputError:
        return False


def read_negatives_csv(path: Path, images: Path, prompts: Sequence[str]) -> list[Job]:
    """Generic CSV of healthy images: `image` (relative to `images`), optional `image_id`."""
    rows = read_csv_rows(path, ("image",))
    jobs = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        image = row.get("image", "")
        key = row.get("image_id") or Path(image).stem or f"row{line}"
        job = Job(key, None, [], None)
        try:
            if not image:
                raise ValueError("image is empty")
            if key in seen:
                raise ValueError(f"image id {key!r} repeats row {seen[key]}")
            seen[key] = line
            job.image_path = resolve_image(images, image)
        except ValueError as exc:
            job.error = f"row {line}: {exc}"
            key = job.key = f"{key}@row{line}"
        job.runs = [Run(key, 0, p) for p in prompts]
        jobs.append(job)
    return jobs


def read_mimic_no_finding(chexpert: Path, metadata: Path, images: Path, prompts: Sequence[str],
                          views: Sequence[str] = MIMIC_VIEWS, split_file: Path | None = None,
                          split: str | None = "test") -> tuple[list[Job], list[str]]:
    """MIMIC-CXR images whose study is labelled No Finding = 1.0 in the CheXpert labels file, frontal
    views only (the LDM was trained on frontal films), and, with `split_file` (mimic-cxr-2.0.0-split.csv),
    only images of the official `split` (the paper: "a balanced sample ... from the test split"); paths in
    the MIMIC-CXR-JPG layout files/p<first 2 digits>/p<subject>/s<study>/<dicom_id>.jpg."""
    in_split: set[str] | None = None
    if split_file is not None and split is not None:
        split_rows = read_csv_rows(split_file, ("dicom_id", "split"))
        in_split = {r["dicom_id"] for r in split_rows if r["split"] == split}
    labels = read_csv_rows(chexpert, ("subject_id", "study_id", "No Finding"))
    healthy = {(r["subject_id"], r["study_id"]) for r in labels if _is_one(r["No Finding"])}
    meta = read_csv_rows(metadata, ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    wanted = {v.upper() for v in views}
    jobs, other_views, other_split = [], 0, 0
    for row in meta:
        if (row["subject_id"], row["study_id"]) not in healthy:
            continue
        if in_split is not None and row["dicom_id"] not in in_split:
            other_split += 1
            continue
        if row["ViewPosition"].upper() not in wanted:
            other_views += 1
            continue
        subject, study, dicom = row["subject_id"], row["study_id"], row["dicom_id"]
        relative = f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg"
        job = Job(dicom, None, [Run(dicom, 0, p) for p in prompts], view=row["ViewPosition"].upper())
        try:
            job.image_path = resolve_image(images, relative)
        except ValueError as exc:
            job.error = str(exc)
        jobs.append(job)
    kept = "/".join(sorted(wanted))
    notes = [f"negatives: {len(healthy)} 'No Finding' studies, {len(jobs)} {kept} image(s), "
             f"{other_views} image(s) of other views left out"
             + (f", {other_split} image(s) outside the {split} split left out" if in_split is not None
                else ", no split file: every split used")]
    return jobs, notes


def _is_one(text: str) -> bool:
    try:
        return float(text) == 1.0
    except ValueError:
        return False


def view_positions(metadata: Path) -> dict[str, str]:
    """dicom_id -> ViewPosition (upper case) from mimic-cxr-2.0.0-metadata.csv."""
    return {r["dicom_id"]: r["ViewPosition"].upper()
            for r in read_csv_rows(metadata, ("dicom_id", "ViewPosition"))}


def subsample_matching(jobs: list[Job], positive_views: dict[str, int], count: int | None, seed: int
                       ) -> tuple[list[Job], str]:
    """A seeded subset of `count` negatives (all: None) whose views follow the positives' view counts
    (`positive_views`, e.g. {"PA": 30, "AP": 10}): each view gets its share of `count` (largest remainders),
    at most as many as there are; negatives of views no positive has are left out. Returns the jobs (in
    their original order) and a note saying what was drawn per view."""
    total = sum(positive_views.values())
    by_view: dict[str, list[Job]] = {}
    for job in jobs:
        by_view.setdefault(job.view, []).append(job)
    wanted = count if count is not None else sum(len(by_view.get(v, [])) for v in positive_views)
    exact = {v: wanted * n / total for v, n in positive_views.items()}
    share = {v: int(x) for v, x in exact.items()}
    for v in sorted(exact, key=lambda v: (share[v] - exact[v], v))[:wanted - sum(share.values())]:
        share[v] += 1
    keep: set[int] = set()
    parts = []
    for k, (view, n) in enumerate(sorted(share.items())):
        pool = by_view.get(view, [])
        take = min(n, len(pool))
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x766965, k]))
        keep.update(id(pool[i]) for i in rng.choice(len(pool), size=take, replace=False).tolist())
        parts.append(f"{view} {take}" + (f" (wanted {n}, only {len(pool)})" if take < n else ""))
    positives = ", ".join(f"{v} {n}" for v, n in sorted(positive_views.items()))
    note = f"negatives: views matched to the positives' ({positives}): " + ", ".join(parts)
    return [job for job in jobs if id(job) in keep], note


def subsample(jobs: list[Job], count: int | None, seed: int) -> list[Job]:
    """A seeded random subset of `count` jobs, in their original order (all of them when count is None)."""
    if count is None or count >= len(jobs):
        return jobs
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6E6567]))
    keep = set(rng.choice(len(jobs), size=count, replace=False).tolist())
    return [job for i, job in enumerate(jobs) if i in keep]

