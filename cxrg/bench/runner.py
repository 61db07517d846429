"""`cxrg bench` as a library call: resolve the settings, read the dataset, load the models, score, report.

`run(...)` is what the command calls and what a notebook or a test can call: every setting resolved through
cxrg.config (command line > cxrg.toml > $CXRG_HOME/config.toml > environment > defaults), the sources and
each model's options recorded in the run's config.json.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxrg.config import Config
from cxrg.errors import InputError, UsageError
from cxrg.runs import say as say_line

CONFIG_SECTION = {"ms-cxr": "ms-cxr", "ms-cxr-loc": "ms-cxr", "vindr-cxr": "vindr-cxr"}
RESUME_KEYS = ("dataset", "annotations", "split", "lut", "model_options", "prompt_text")
PROMPT_TEXTS = ("standardised", "original")


_quiet = False
"""Set while a process other than rank 0 of a sharded run works: only rank 0 talks to the user."""


def say(text: str) -> None:
    """cxrg.runs.say, silent in the processes other than rank 0 of a sharded run."""
    if not _quiet:
        say_line(text)


def model_names(models: str) -> list[str]:
    names = [name.strip() for name in models.split(",") if name.strip()]
    if not names:
        raise UsageError("--models is empty", hint="e.g. --models oracle")
    if len(set(names)) != len(names):
        raise UsageError(f"--models names a model twice: {models}")
    return names


def run(cfg: Config, models: str, dataset: str, annotations: Path | None = None, images: Path | None = None,
        out: Path | None = None, resamples: int = 10_000, seed: int = 0, limit: int | None = None,
        split: str | None = None, strict: bool = False, extractor: str | None = None,
        option_pairs: Sequence[str] | None = None, shortcuts: dict[str, Any] | None = None,
        save_heatmaps: bool = True, heatmap_size: int = 256, prompt_text: str = "standardised",
        progress: bool = True, exact_prompt: bool = False, restart: bool = False,
        protocol: str | None = None, choices: dict[str, Any] | None = None,
        batch_size: int | str | None = None):
    """Score `models` on `dataset`; returns the harness's BenchResult (its run folder holds everything).
    The HTML report is the caller's step (cxrg.api.bench: the report sits above the bench).

    One writer per run folder (an OS lock; a second run into it is refused). Rows whose inputs changed
    since they were scored are recomputed (see cxrg.bench.harness); `restart` drops every row first. A
    Ctrl-C keeps what is finished and raises cxrg.runs.Interrupted (exit 130).

    `protocol` ("paper", the default, or "cxrg") and `choices` (explicit values of its choices, see
    cxrg/protocol.py; `extractor` is one of them, None = the protocol's) are resolved through
    cxrg.protocol.resolve and recorded in config.json. `batch_size`: images per model call, a number or
    "auto" (None: cxrg.toml, else auto; cxrg.bench.batching)."""
    global _quiet
    from cxrg.bench.shards import Ranks
    from cxrg.images import dicom_display
    from cxrg.protocol import resolve
    from cxrg.runs import interrupt_guard

    resolved = resolve("bench", {**(choices or {}), "extractor": extractor}, protocol, cfg)
    ranks = Ranks.from_environment()
    _quiet = not ranks.main
    try:
        with interrupt_guard(terminate=ranks.sharded), dicom_display(resolved["dicom_display"]):
            ranks.connect()  # a hand-set WORLD_SIZE with no peer fails here, before the folder is touched
            return _run(cfg, models, dataset, annotations, images, out, resamples, seed, limit, split, strict,
                        resolved["extractor"], option_pairs, shortcuts, save_heatmaps, heatmap_size,
                        prompt_text, progress, exact_prompt, restart, ranks, resolved, batch_size)
    finally:
        _quiet = False
        ranks.close()


def _run(cfg, models, dataset, annotations, images, out, resamples, seed, limit, split, strict, extractor,
         option_pairs, shortcuts, save_heatmaps, heatmap_size, prompt_text, progress, exact_prompt,
         restart, ranks, resolved, batch_size=None):

    from cxrg.anatomy.lut import active_lut
    from cxrg.bench import shards
    from cxrg.bench.batching import configured_batch_size, resolve_batch_size
    from cxrg.bench.datasets import DATASETS, read_dataset
    from cxrg.bench.harness import METRIC_VERSION, PER_SAMPLE_FIELDS, read_per_sample
    from cxrg.loading import load_models, parse_option_pairs
    from cxrg.runs import RunDir, file_fingerprint

    names = model_names(models)
    known = (*DATASETS, "ms-cxr-loc")
    if dataset not in known:
        raise UsageError(f"unknown dataset '{dataset}'", hint=f"choose one of: {', '.join(known)}")
    if prompt_text not in PROMPT_TEXTS:
        raise UsageError(f"unknown --prompt-text {prompt_text!r}", hint="choose standardised or original")
    if prompt_text == "original" and dataset != "ms-cxr-loc":
        raise UsageError("--prompt-text original applies to --dataset ms-cxr-loc (paper, Appendix H.1)")
    section = CONFIG_SECTION.get(dataset)
    if annotations is None:
        annotations = cfg.require(f"{section}.annotations", "--annotations") if section else None
    if images is None:
        images = cfg.require(f"{section}.images", "--images") if section else None
    if annotations is None or images is None:
        raise UsageError(f"--dataset {dataset} needs --annotations and --images")
    annotations, images = Path(annotations), Path(images)
    if not images.is_dir():
        raise UsageError(f"images folder not found: {images}", hint="check --images or cxrg.toml")
    weights, device = cfg.get("weights"), cfg.get("device", "cpu")
    shortcuts = dict(shortcuts or {})
    lut_path = shortcuts.get("lut") or cfg.get("lut")
    shortcuts["lut"] = lut_path
    table = active_lut(weights, lut_path)
    data = None
    if dataset != "ms-cxr-loc":
        data = read_dataset(dataset, annotations, images, split=split, lut=table, pairs=resolved["loc_pairs"],
                            candidates=resolved["vindr_candidates"], style=resolved["prompt_style"])
        if not data.samples:
            raise UsageError("the dataset has no samples", where=str(annotations))
    elif not annotations.is_file():
        raise InputError("MS-CXR annotations file not found", where=str(annotations),
                         hint="check --annotations or [ms-cxr] annotations in cxrg.toml")
    pairs = parse_option_pairs(option_pairs)
    ldm_defaults(cfg, pairs, names, resolved)
    local_device = ranks.device(device)
    if ranks.sharded:
        say(f"{ranks.world} processes: the images are split between them (docs/scale.md)")
    loaded, model_errors, options = load_models(names, cfg, weights, local_device, pairs, shortcuts,
                                                strict=strict, warn=say)
    if not loaded:
        raise UsageError("no model could be loaded", hint="see `cxrg models check`")
    requested, batch_source = configured_batch_size(cfg, batch_size, local_device)
    images_per_call, batch_why = resolve_batch_size(requested, loaded, local_device)
    if images_per_call > 1 or batch_source != "default":
        say(f"batch size: {images_per_call} images per model call ({batch_why}; from {batch_source})")
    config = {"models": names, "dataset": dataset, "annotations": str(annotations.resolve()),
              "images": str(images.resolve()), "split": split, "limit": limit, "resamples": resamples,
              "seed": seed, "device": device, "weights": str(weights) if weights else None,
              "lut": table.metadata.get("source", str(lut_path) if lut_path else "default"),
              "prompt_text": prompt_text, "model_options": options,
              "ldm_settings": {name: m.settings.to_dict() | {"window": m.settings.window()}
                               for name, m in loaded.items() if getattr(m, "settings", None) is not None},
              "save_heatmaps": save_heatmaps, "heatmap_size": heatmap_size, "exact_prompt": exact_prompt,
              "batch_size": {"requested": requested, "source": batch_source, "used": images_per_call,
                             "why": batch_why},
              "settings": cfg.record(), **resolved.record()}
    model_fps = model_fingerprints(loaded, options, config["ldm_settings"], weights)
    if resolved["dicom_display"] != "window":  # another grey scale of DICOM inputs: every row recomputed
        from cxrg.runs import fingerprint

        model_fps = {k: fingerprint([v, resolved["dicom_display"]]) for k, v in model_fps.items()}
    config["fingerprints"] = {"annotations": file_fingerprint(annotations, content=True),
                              "images": str(images.resolve()), "models": model_fps,
                              "metrics": METRIC_VERSION, "cxrg": config_version()}
    out = out or Path("runs") / f"bench-{dataset}"
    # Only rank 0 opens the run folder (lock, config.json, log.txt), drops old results on --restart and
    # folds old shards in; the others wait for it, then read the resume base it left.
    run_dir = (RunDir(out, "bench", config, resume_keys=() if restart else RESUME_KEYS, lock=True)
               if ranks.main else None)
    try:
        loc = None
        if run_dir is not None:
            if restart:
                for name in ("per_sample.csv", "summary.csv", "summary.json"):
                    run_dir.file(name).unlink(missing_ok=True)
                shards.remove_shards(run_dir.path, "per_sample")
                say(f"--restart: previous results in {run_dir.path} dropped")
            if ranks.sharded:
                folded = shards.fold_in(run_dir.path, "per_sample.csv", PER_SAMPLE_FIELDS, read_per_sample)
                if folded:
                    say(f"resuming: {folded} rows of an earlier run's shards folded into per_sample.csv")
            if dataset == "ms-cxr-loc":
                loc = ms_cxr_loc(annotations, run_dir, extractor, local_device, resolved["location_mappings"],
                                 resolved["loc_pairs"], resolved["prompt_style"])
        ranks.barrier("the run folder was ready")
        if run_dir is None:
            run_dir = shards.RankRun(out, "bench", ranks)
            if dataset == "ms-cxr-loc":
                loc = ms_cxr_loc(annotations, run_dir, extractor, local_device, resolved["location_mappings"],
                                 resolved["loc_pairs"], resolved["prompt_style"])
        run_dir.logger.info("%s on %s", ranks.label(), local_device)
        return _score(run_dir, config, data, loaded, model_errors,
                      model_fps, dataset, loc, images, split, extractor, local_device, prompt_text,
                      exact_prompt, resamples, seed, limit, save_heatmaps, heatmap_size, progress, ranks,
                      resolved["loc_pairs"], resolved["prompt_style"], images_per_call)
    finally:
        if run_dir is not None:
            run_dir.close()


def config_version() -> str:
    from cxrg import __version__

    return __version__


def model_fingerprints(loaded: dict[str, Any], options: dict[str, Any], ldm_settings: dict[str, Any],
                       weights: Any) -> dict[str, str]:
    """Per model: a hash of its identity (name, card version, distribution version), its weight files (size
    and modification time of each file its card names, under the weights folder), its options (which
    include the embeddings and LUT paths: their files are fingerprinted too) and its settings."""
    from cxrg.config import weights_root
    from cxrg.registry import discover
    from cxrg.runs import file_fingerprint, fingerprint

    entries = discover()
    root = weights_root(weights)
    out = {}
    for name, model in loaded.items():
        entry = entries.get(name)
        files = {w.path: file_fingerprint(root / w.path) for w in model.card.weights}
        option_files = {k: file_fingerprint(Path(v)) for k, v in (options.get(name) or {}).items()
                        if isinstance(v, str) and v and Path(v).exists()}
        out[name] = fingerprint({"name": name, "version": model.card.version,
                                 "distribution": [entry.distribution, entry.version] if entry else None,
                                 "weights": files, "option_files": option_files,
                                 "options": options.get(name), "settings": ldm_settings.get(name)})
    return out


def normalise_prompts(samples: list, exact: bool, log, style: str = "cxrg") -> None:
    """Every sample's prompt read by cxrg.phrases.normalise (its class as the pathology when it is one of
    the eight) into `vocabulary_prompt`, which models taking vocabulary prompts get (prior, ldm); free-text
    models keep the dataset's text (the published MS-CXR protocol), so no model's sample set depends on
    another's parser. A phrase that cannot be read stays as written (a vocabulary model then fails on that
    sample with the reason, counted per model), logged. `style`: the protocol's prompt_style."""
    from cxrg.errors import CxrgError
    from cxrg.phrases import normalise
    from cxrg.vocab import PATHOLOGIES

    if exact:
        log("prompts: --exact-prompt: every prompt is given to the models as written")
        return
    changed, unread = 0, []
    for sample in samples:
        if sample.error or not sample.prompt:
            continue
        sample.phrase = sample.phrase or sample.prompt
        try:
            prompt = normalise(sample.prompt, pathology=sample.category if sample.category in PATHOLOGIES
                               else None, style=style).prompt
        except CxrgError as exc:
            unread.append(f"{sample.sample_id} ({exc.what})")
            continue
        if prompt != sample.prompt:
            changed += 1
            sample.vocabulary_prompt = prompt
    unread_note = (f"; {len(unread)} could not be read and are given as written: " + ", ".join(unread[:5])
                   + (" ..." if len(unread) > 5 else "")) if unread else ""
    log(f"prompts: {changed} of {len(samples)} read into a different vocabulary prompt for the models that "
        "take vocabulary prompts (cxrg.phrases; --exact-prompt turns this off)" + unread_note)


def _score(run_dir, config, data, loaded, model_errors, model_fps, dataset, loc, images, split,
           extractor, device, prompt_text, exact_prompt, resamples, seed, limit, save_heatmaps, heatmap_size,
           progress, ranks, loc_pairs="merged", prompt_style="cxrg", batch_size=1):
    from rich.console import Console

    from cxrg.bench.datasets import read_dataset
    from cxrg.bench.harness import run_benchmark
    from cxrg.bench.heatmap_store import HeatmapStore
    from cxrg.bench.reports import rich_table, write_reports
    from cxrg.progress import progress as shown

    if dataset == "ms-cxr-loc":
        data = read_dataset("ms-cxr", loc, images, split=split, prompt_text=prompt_text, pairs=loc_pairs)
        data.name = "ms-cxr-loc"
        if not data.samples:
            raise UsageError("the dataset has no samples", where=str(annotations))
    for note in data.notes:
        run_dir.logger.info("dataset: %s", note)
        say(f"dataset: {note}")

    def log(text: str) -> None:
        run_dir.logger.info("%s", text)
        say(text)

    normalise_prompts(data.samples[:limit] if limit else data.samples,
                      exact_prompt or prompt_text == "original", log, prompt_style)
    total = len(data.samples[:limit] if limit else data.samples)
    store = HeatmapStore(run_dir.path, heatmap_size) if save_heatmaps else None
    with shown("bench" if not ranks.sharded else f"bench, {ranks.label()}",
               total=total if not ranks.sharded else None, unit="samples",
               enabled=progress and ranks.main) as bar:
        result = run_benchmark(loaded, data, run_dir, resamples, seed, limit, model_errors,
                               progress=bar.advance, store=store,
                               model_fingerprints=model_fps, ranks=ranks, batch_size=batch_size)
    if not ranks.main:
        return result
    write_reports(result.summary, run_dir.path)
    Console(file=sys.stdout).print(rich_table(result.summary))
    for name, count in result.summary["counts"].items():
        line = f"{name}: {count['scored']} of {count['samples']} samples scored, {count['failed']} failed"
        if count.get("no_prediction"):
            line += f" ({count['no_prediction']} no prediction)"
        if count["failed"]:
            line += " (reasons in per_sample.csv and log.txt)"
        if count.get("undefined"):
            line += (f", {count['undefined']} undefined (a metric without a value, e.g. an all-NaN or flat "
                     "map)")
        if count.get("cnr_undefined"):
            line += f", CNR undefined for {count['cnr_undefined']}"
        say(line)
    return result


def ldm_defaults(cfg: Config, pairs: dict[str, dict[str, str]], names: Sequence[str], resolved) -> None:
    """The protocol's DDIM grid and upsampling for the LDM models, as `-o MODEL.key=value` pairs where
    neither -o nor a configuration file ([ldm], [models.MODEL]) sets them. The tuned `ldm` gets the
    upsampling only: its grid is the one its embeddings were tuned on (recorded in the file; `cxrg tune
    --protocol` chose it), which the model adopts when nothing sets it."""
    given = {model: set(pairs.get("*", {})) | set(pairs.get(model, {})) for model in ("ldm", "ldm-frozen")}
    for model in ("ldm", "ldm-frozen"):  # what -o set for this model, before any default below is added
        if model not in names:
            continue
        for key, choice in (("timestep_spacing", "timestep_spacing"), ("upsampling", "heatmap_upsampling")):
            if model == "ldm" and key == "timestep_spacing":
                continue
            if key in given[model]:
                continue
            if any(file.lookup(f"{place}.{key}")[0] for file in cfg.files
                   for place in ("ldm", f"models.{model}")):
                continue
            pairs.setdefault(model, {})[key] = resolved[choice]


def ms_cxr_loc(ms_cxr: Path, run, extractor: str, device: str, mappings: str = "extended",
               pairs: str = "merged", style: str = "cxrg") -> Path:
    """MS-CXR rewritten to '{location} {pathology}' prompts in the prompt `style`, cached in
    RUN/ms-cxr-loc/ (with dropped.csv)."""
    import json

    from cxrg.curation.extractors import make_extractor
    from cxrg.curation.mscxr import to_ms_cxr_loc, write_ms_cxr_loc
    from cxrg.errors import MissingWeightsError
    from cxrg.runs import atomic_write_json, file_fingerprint

    folder = run.file("ms-cxr-loc")
    cached = sorted(folder.glob("*_loc.csv")) if folder.is_dir() else []
    source = {"annotations": file_fingerprint(ms_cxr, content=True), "extractor": extractor}
    if mappings != "extended":
        source["location_mappings"] = mappings
    if style != "cxrg":
        source["prompt_style"] = style
    stamp = folder / "source.json"
    try:
        same = json.loads(stamp.read_text()) == source
    except (OSError, ValueError):
        same = False
    if cached and same:
        say(f"dataset: MS-CXR-loc from {cached[0]} (delete {folder} to rebuild)")
        return cached[0]
    if cached:
        say("dataset: the MS-CXR annotations or the extractor changed since MS-CXR-loc was built: rebuilding")
        for path in cached:
            path.unlink()
    try:
        chosen, note = make_extractor(extractor, device=device, mappings=mappings)
    except MissingWeightsError as exc:
        exc.hint = (exc.hint or "") + "; the paper protocol uses RadGraph-XL alone (--protocol cxrg: auto)"
        raise
    result = to_ms_cxr_loc(ms_cxr, chosen, style)
    path = write_ms_cxr_loc(result, folder, ms_cxr)
    atomic_write_json(stamp, source)
    dropped = sum(result.dropped.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in result.dropped.most_common())
    merged = (f"; {result.shared_prompts} kept phrases share an image and a prompt: merged into "
              f"{result.merged_samples} samples" if result.shared_prompts else "")
    split = (f"; {result.split_paths} (dicom_id, phrase) pairs have several image paths: kept apart"
             if result.split_paths else "")
    say(f"dataset: MS-CXR-loc ({type(chosen).__name__}{'; ' + note if note else ''}): {len(result.kept)} of "
        f"{len(result.phrases)} phrases kept, {dropped} dropped" + (f" ({reasons})" if reasons else "")
        + merged + split + f"; written to {path}")
    run.logger.info("ms-cxr-loc: %d kept, %d dropped: %s%s%s", len(result.kept), dropped, reasons, merged,
                    split)
    from cxrg.curation.mscxr import count_lines

    for line in count_lines(result, pairs):
        say(f"dataset: {line}")
        run.logger.info("ms-cxr-loc: %s", line)
    for phrase in result.phrases:  # every dropped phrase, with its reason (also in dropped.csv)
        if not phrase.prompt:
            run.logger.info("ms-cxr-loc: dropped %s %r (%s): %s", phrase.dicom_id, phrase.text,
                            phrase.category, phrase.reason)
    return path
