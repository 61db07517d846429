"""`cxrg classify` as a library call (`cxrg.classify.run(...)`): read the cohort, load the LDM and the tuned
embeddings, build the classifier, run it resumably and write the reports. The command only parses."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cxrg.runs import say

RESUME_KEYS = ("weighting", "error", "dicom_display",
               "split_file", "positives", "positives_format", "negatives", "chexpert_labels",
               "metadata", "views",
               "max_negatives", "pathology", "healthy_prompt", "pathology_prompt", "fixed_prompt",
               "negative_prompts", "strategies", "draws", "t_min", "t_max", "seed", "dtype", "embeddings",
               "text_encoder")


def run(
        positives: Path,
        images: Path,
        out: Path = Path('runs/classify'),
        positives_format: str = 'ms-cxr',
        negatives: Path | None = None,
        chexpert_labels: Path | None = None,
        metadata: Path | None = None,
        negatives_images: Path | None = None,
        views: str | None = None,
        max_negatives: int | None = None,
        all_negatives: bool = False,
        split_file: Path | None = None,
        split: str = 'test',
        weighting: str = 'per-class',
        pathology: str = 'Pneumothorax',
        healthy_prompt: str = 'No acute cardiopulmonary process',
        pathology_prompt: str | None = None,
        fixed_prompt: str | None = None,
        negative_locations: str = 'left apical,right apical,left,right',
        strategies: str | None = None,
        draws: int = 100,
        t_min: int = 0,
        t_max: int = 999,
        batch_size: int = 32,
        images_per_batch: int = 1,
        resamples: int = 10000,
        seed: int = 0,
        limit: int | None = None,
        weights: Path | None = None,
        embeddings: Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        protocol: str | None = None,
        error: str | None = None,
        loc_pairs: str | None = None,
        dicom_display: str | None = None,
) -> None:
    """Heatmap-weighted diffusion classifier: scores.csv, summary.json, auroc/bins.csv, results.md/png.

    `protocol` ("paper", the default, or "cxrg") sets `error` (eq. 8: norm | squared), whether negatives
    need a split file, `loc_pairs`, `dicom_display` and the LDM's DDIM grid and upsampling (cxrg/protocol.py;
    an explicit value wins). `views` None: the negatives' views follow the positives' (metadata of their
    dicom_ids), else PA,AP; a list such as "PA" filters instead."""
    from cxrg.classify import data
    from cxrg.classify.diffusion import WEIGHTINGS
    from cxrg.classify.heatmaps import STRATEGIES, parse_strategies
    from cxrg.config import load_config
    from cxrg.errors import UsageError
    from cxrg.vocab import PATHOLOGY_TEXT, canonical_pathology

    cfg = load_config(cli={"weights": weights, "device": device, "dtype": dtype, "embeddings": embeddings,
                           "mimic-cxr.split": split_file})
    weights, device, dtype = cfg.get("weights"), cfg.get("device", "cpu"), cfg.get("dtype", "float32")
    embeddings = cfg.get("embeddings")
    from cxrg.images import dicom_display as displayed
    from cxrg.protocol import resolve

    resolved = resolve("classify", {"error": error, "loc_pairs": loc_pairs, "dicom_display": dicom_display},
                       protocol, cfg)
    if weighting not in WEIGHTINGS:
        raise UsageError(f"unknown --weighting {weighting!r}", hint=f"choose {' or '.join(WEIGHTINGS)}")

    if (negatives is None) == (chexpert_labels is None):
        raise UsageError("give the negatives either as --negatives FILE or as --chexpert-labels FILE "
                         "--metadata FILE")
    if chexpert_labels is not None and metadata is None:
        raise UsageError("--chexpert-labels needs --metadata (mimic-cxr-2.0.0-metadata.csv)")
    pathology = canonical_pathology(pathology)
    pathology_prompt = pathology_prompt or PATHOLOGY_TEXT[pathology]
    fixed_prompt = fixed_prompt or pathology_prompt
    if not healthy_prompt.strip() or not pathology_prompt.strip() or not fixed_prompt.strip():
        raise UsageError("class and heatmap prompts must not be empty")
    chosen = parse_strategies(strategies) if strategies is not None else list(STRATEGIES)
    locations = [loc.strip() for loc in negative_locations.split(",") if loc.strip()]
    if not locations:
        raise UsageError("--negative-locations is empty", hint="e.g. 'left apical,right apical,left,right'")
    negative_prompts = data.location_prompts(locations, pathology)
    negatives_root = negatives_images or images
    if not negatives_root.is_dir():
        raise UsageError(f"negatives images folder not found: {negatives_root}",
                         hint="check --negatives-images")

    positive_jobs, notes = data.read_positives(positives, positives_format, images, pathology,
                                               resolved["loc_pairs"], resolved["prompt_style"])
    positive_views: dict[str, int] = {}
    if negatives is not None:
        negative_jobs = data.read_negatives_csv(negatives, negatives_root, negative_prompts)
    else:
        assert chexpert_labels is not None and metadata is not None
        split_path = cfg.get("mimic-cxr.split")
        if split_path is None and split != "any" and resolved["negatives_split"] == "required":
            raise UsageError("the negatives must come from the MIMIC-CXR test split (paper, App. K): "
                             "no split file given",
                             hint="pass --split-file mimic-cxr-2.0.0-split.csv (or [mimic-cxr] split in "
                                  "cxrg.toml), or --split any to draw from every split")
        if views is None:  # the positives' views, from the metadata of their dicom_ids
            known = data.view_positions(metadata)
            for job in positive_jobs:
                if job.key in known:
                    positive_views[known[job.key]] = positive_views.get(known[job.key], 0) + 1
            if not positive_views:
                notes.append("negatives: no positive image in the metadata: views PA,AP (not matched)")
        view_list = (sorted(positive_views) if positive_views else
                     [v.strip() for v in (views or "PA,AP").split(",") if v.strip()])
        negative_jobs, more = data.read_mimic_no_finding(chexpert_labels, metadata, negatives_root,
                                                         negative_prompts, view_list, split_path,
                                                         None if split == "any" else split)
        notes += more
    if max_negatives is None and not all_negatives:
        max_negatives = len(positive_jobs)  # balanced, as the paper samples its healthy set
    if positive_views:
        negative_jobs, view_note = data.subsample_matching(negative_jobs, positive_views, max_negatives, seed)
        notes.append(view_note)
    else:
        negative_jobs = data.subsample(negative_jobs, max_negatives, seed)
    if limit is not None:
        positive_jobs, negative_jobs = positive_jobs[:limit], negative_jobs[:limit]
    if not positive_jobs:
        raise UsageError(f"no {pathology} sample among the positives", where=str(positives))
    if not negative_jobs:
        raise UsageError("no negative image", where=str(negatives or chexpert_labels))

    from cxrg.bench.shards import Ranks

    ranks = Ranks.from_environment()
    ranks.connect()  # a hand-set WORLD_SIZE with no peer fails here, before anything is loaded
    note = _say if ranks.main else _quiet  # only rank 0 of several processes talks to the user
    if ranks.sharded:
        note(f"{ranks.world} processes: the images are split between them (docs/scale.md)")
    classifier, embeddings_used, chosen = _classifier(cfg, weights, ranks.device(device), dtype, embeddings,
                                                      chosen, strategies is not None, fixed_prompt,
                                                      healthy_prompt, pathology_prompt, draws, t_min, t_max,
                                                      batch_size, seed, weighting, note, resolved)
    classifier.images_per_batch = images_per_batch
    config = {"positives": str(positives.resolve()), "positives_format": positives_format,
              "images": str(images.resolve()), "negatives": str(negatives.resolve()) if negatives else None,
              "chexpert_labels": str(chexpert_labels.resolve()) if chexpert_labels else None,
              "metadata": str(metadata.resolve()) if metadata else None,
              "negatives_images": str(negatives_root.resolve()), "views": views,
              "max_negatives": max_negatives, "pathology": pathology, "healthy_prompt": healthy_prompt,
              "pathology_prompt": pathology_prompt, "fixed_prompt": fixed_prompt,
              "negative_prompts": negative_prompts, "strategies": chosen, "draws": draws, "t_min": t_min,
              "t_max": t_max, "batch_size": batch_size, "images_per_batch": images_per_batch,
              "resamples": resamples, "seed": seed, "limit": limit,
              "device": device, "dtype": dtype, "embeddings": embeddings_used,
              "text_encoder": classifier.engine.ldm.fingerprint, "weighting": weighting,
              "split_file": str(cfg.get("mimic-cxr.split")) if chexpert_labels else None, "split": split,
              "error": resolved["error"], "dicom_display": resolved["dicom_display"],
              "negative_views": positive_views or None, **resolved.record(),
              "ldm_settings": classifier.engine.settings.to_dict() | {"window": classifier.engine.settings
                                                                     .window()},
              "settings": cfg.record()}
    try:
        with displayed(resolved["dicom_display"]):
            _run(classifier, positive_jobs + negative_jobs, out, config, notes, resamples, seed, chosen,
                 ranks, note)
    finally:
        ranks.close()


def _say(text: str) -> None:
    say(text)


def _quiet(text: str) -> None:  # noqa: ARG001
    pass


def _classifier(cfg, weights: Path | None, device: str, dtype: str, embeddings: Path | None,
                chosen: list[str], explicit: bool, fixed_prompt: str, healthy_prompt: str,
                pathology_prompt: str, draws: int, t_min: int, t_max: int, batch_size: int, seed: int,
                weighting: str, say=_say, resolved=None):
    """Load the LDM (and the tuned embeddings when the tuned strategy runs) and build the classifier."""
    from cxrg.classify import heatmaps
    from cxrg.classify.diffusion import DrawSettings
    from cxrg.classify.runner import Classifier
    from cxrg.config import weights_root
    from cxrg.errors import UsageError
    from cxrg.ldm.config import architecture_from_bundle
    from cxrg.ldm.heatmap import LdmEngine
    from cxrg.ldm.loading import load_ldm, resolve_dtype
    from cxrg.ldm.text import Codebook
    from cxrg.ldm.weights import WeightPaths

    resolve_dtype(dtype)
    weights = weights_root(weights)  # --weights, else cxrg.toml, else $CXRG_HOME, else ~/.cache/cxrg
    from cxrg.protocol import resolve

    resolved = resolved or resolve("classify")
    settings = DrawSettings(draws, t_min, t_max, batch_size, resolved["error"])
    bundle = WeightPaths(weights_root(weights)).bundle
    settings.check(int(architecture_from_bundle(bundle).scheduler["num_train_timesteps"]))  # before loading
    tuned_path = Path(embeddings) if embeddings else WeightPaths(weights_root(weights)).tuned_embeddings
    if "tuned" in chosen and not tuned_path.is_file():
        if explicit:
            raise UsageError("the tuned strategy needs tuned embeddings, not found", where=str(tuned_path),
                             hint="make them with `cxrg tune`, pass --embeddings FILE, or leave tuned out of "
                                  "--strategies")
        say(f"cxrg: note: strategy tuned skipped: no tuned embeddings at {tuned_path} (pass --embeddings)")
        chosen = [s for s in chosen if s != "tuned"]
    ldm = load_ldm(weights, device=device, dtype=dtype)
    if ldm.device.type == "cpu":
        import torch

        torch.set_flush_denormal(True)  # denormal floats can slow CPU U-Net passes down many times over
    table = cfg.table("ldm")
    batch = int(table.pop("batch", None) or cfg.get("ldm.batch", 10))
    protocol_ldm = {"timestep_spacing": resolved["timestep_spacing"],
                    "upsampling": resolved["heatmap_upsampling"]}  # below [ldm] in cxrg.toml
    attention = str(table.pop("attention", "sdpa"))
    invariant = bool(table.pop("batch_invariant", True))
    heatmap_settings = heatmaps.HEATMAP_SETTINGS.with_overrides(
        {**protocol_ldm, **{k: v for k, v in table.items() if k != "otsu"}})
    codebook = None
    if "tuned" in chosen:
        from cxrg.models.ldm import check_window

        codebook, meta = Codebook.load(tuned_path, fingerprint=ldm.fingerprint)
        check_window(meta, heatmap_settings, int(ldm.architecture.scheduler["num_train_timesteps"]),
                     tuned_path, allow=False)
    engine = LdmEngine(ldm, heatmap_settings, batch_size=batch, attention=attention,
                       batch_invariant=invariant)
    classifier = Classifier(engine, heatmaps.HeatmapSource(engine, fixed_prompt, codebook), healthy_prompt,
                            pathology_prompt, settings, chosen, seed, weighting)
    return classifier, str(Path(tuned_path).resolve()) if codebook is not None else None, chosen


def _run(classifier, jobs: list, out: Path, config: dict, notes: list[str], resamples: int, seed: int,
         strategies: list[str], ranks=None, say=_say) -> None:
    import sys

    from cxrg.bench import shards
    from cxrg.classify.report import markdown, summarise, write_reports
    from cxrg.classify.runner import SCORE_FIELDS, read_scores, run_classification
    from cxrg.progress import progress
    from cxrg.runs import RunDir, interrupt_guard

    ranks = ranks or shards.Ranks()
    # Only rank 0 (the only process without a launcher) opens the run folder (config.json, log.txt and the
    # folder's lock: one writer per run folder) and folds an earlier run's shards in; the others wait for
    # it, then read the resume base it left.
    run: Any = (RunDir(out, "classify", config, resume_keys=RESUME_KEYS, lock=True)
                if ranks.main else None)  # a RunDir, or a RankRun (shard log only) on the other ranks
    try:
        with interrupt_guard(terminate=True) if ranks.sharded else contextlib.nullcontext():
            if run is not None and ranks.sharded:
                folded = shards.fold_in(run.path, "scores.csv", SCORE_FIELDS, read_scores)
                if folded:
                    say(f"resuming: {folded} rows of an earlier run's shards folded into scores.csv")
            ranks.barrier("the run folder was ready")
            if run is None:
                run = shards.RankRun(out, "classify", ranks)
            run.logger.info("%s on %s", ranks.label(), classifier.engine.ldm.device)
            for note in notes:
                run.logger.info("%s", note)
                say(note)
            with progress("classify" if not ranks.sharded else f"classify, {ranks.label()}",
                          total=len(jobs) if not ranks.sharded else None, unit="images",
                          enabled=ranks.main) as bar:
                rows = run_classification(classifier, jobs, run, progress=bar.advance, ranks=ranks)
        if not ranks.main:
            return
        summary = summarise(rows, jobs, strategies, resamples, seed, notes)
        write_reports(summary, run.path)
        print(markdown(summary), file=sys.stdout, end="", flush=True)
        if summary["small_sample"]:
            run.logger.warning("small sample: %s", summary["small_sample"])
            say(f"cxrg: warning: {summary['small_sample']}")
        for kind, count in summary["counts"].items():
            line = (f"{kind}s: {count['runs_scored']} of {count['runs']} runs scored "
                    f"({count['images'] - count['images_failed']} of {count['images']} images), "
                    f"{count['runs_failed']} failed")
            if count["runs_failed"]:
                line += " (reasons in scores.csv and log.txt)"
            say(line)
        say(f"results in {run.path}")
    except KeyboardInterrupt:
        if ranks.sharded:
            from cxrg.runs import Interrupted

            raise Interrupted(f"interrupted: {ranks.label()}: its shard is kept; rerun the same command "
                              "(any number of processes) to resume") from None
        raise
    finally:
        if run is not None:
            run.close()
