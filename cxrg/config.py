"""Settings: the one way in. Every command resolves every value here, and records where it came from.

Precedence, first found wins:

1. the command line (`--weights`, `-o key=value`, ...);
2. ./cxrg.toml;
3. $CXRG_HOME/config.toml;
4. environment variables, one documented source of defaults (read here and nowhere else):
   CXRG_WEIGHTS, CXRG_LUT, CXRG_EMBEDDINGS, CXRG_DEVICE, CXRG_DTYPE, CXRG_LDM_BATCH;
5. the built-in default.

CXRG_HOME (the default weights folder and where config.toml lives), CXRG_DEBUG (tracebacks),
CXRG_LOAD_PLUGINS (which plugin distributions to discover), the image limits CXRG_MAX_IMAGE_PIXELS /
CXRG_MAX_IMAGE_ASPECT, CXRG_SHARD_STALL_SECONDS (how long rank 0 of a sharded run waits for a silent
process) and CXRG_SHARD_START_SECONDS (how long the processes wait to meet at the start) are read here too,
through `env`. Every numeric value is checked for type and range where it is read (`check_number`).
Relative paths in a file are relative to that file's folder. Keys:

    weights = "/data/cxrg-weights"        # the weights folder (as --weights)
    embeddings = "..."                    # tuned embeddings for `ldm` (default <weights>/tuned_embeddings...)
    lut = "lut.json"                      # the anatomical LUT (default: the shipped approximation)
    device = "cpu"
    dtype = "float32"
    protocol = "paper"                    # or "cxrg": the defaults of every choice in cxrg/protocol.py

    [ms-cxr]      annotations = ".../MS_CXR_Local_Alignment_v1.1.0.csv", images = ".../mimic-cxr-jpg"
    [vindr-cxr]   annotations = ".../annotations/annotations_test.csv", images = ".../test"
    [mimic-cxr]   reports, chexpert, metadata, split (mimic-cxr-2.0.0-split.csv), images
    [imagenome]   gold = ".../gold_bbox_coordinate_annotations_1000images.csv"
    [tune]        manifest, images, out
    [bench]       batch_size = 4 | "auto", or per device type: [bench.batch_size] cpu = 2, cuda = "auto"
    [ldm]         heatmap settings of ldm and ldm-frozen: inference_steps, capture_steps = [start, stop],
                  capture_order, layers, smoothing_sigma, otsu (ldm-frozen), timestep_spacing, upsampling,
                  batch, attention
    [choices]     one choice of the protocol table (cxrg/protocol.py), e.g. negation = "mention"
    [models.NAME] options of one model (`cxrg models info NAME` lists them), e.g. [models.ldm] dtype
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrg.errors import InputError, UsageError

PATH_KEYS = {"weights", "embeddings", "lut", "annotations", "images", "reports", "chexpert", "metadata",
             "gold", "manifest", "out", "split"}
TOP_LEVEL = ("weights", "embeddings", "lut", "device", "dtype", "protocol")
SECTIONS: dict[str, tuple[str, ...]] = {
    "ms-cxr": ("annotations", "images"),
    "vindr-cxr": ("annotations", "images"),
    "mimic-cxr": ("reports", "chexpert", "metadata", "split", "images"),
    "imagenome": ("gold",),
    "tune": ("manifest", "images", "out"),
    "bench": ("batch_size",),
    "ldm": ("inference_steps", "capture_steps", "capture_order", "layers", "smoothing_sigma", "otsu",
            "timestep_spacing", "upsampling", "batch", "attention", "batch_invariant"),
    "choices": ("extractor", "location_mappings", "prompt_style", "negation", "loc_pairs", "error",
                "negatives_split", "g_normalisation", "timestep_spacing", "dicom_display", "vindr_candidates",
                "heatmap_upsampling", "no_prediction"),
}
DATASETS = {name: keys for name, keys in SECTIONS.items() if name in ("ms-cxr", "vindr-cxr", "mimic-cxr",
                                                                      "imagenome")}
ENVIRONMENT = {"weights": "CXRG_WEIGHTS", "lut": "CXRG_LUT", "embeddings": "CXRG_EMBEDDINGS",
               "device": "CXRG_DEVICE", "dtype": "CXRG_DTYPE", "ldm.batch": "CXRG_LDM_BATCH"}
EXAMPLES = {
    "weights": 'weights = "/data/cxrg-weights"',
    "ms-cxr.annotations": '[ms-cxr]\nannotations = "/data/ms-cxr/MS_CXR_Local_Alignment_v1.1.0.csv"',
    "ms-cxr.images": '[ms-cxr]\nimages = "/data/mimic-cxr-jpg/2.0.0"',
    "vindr-cxr.annotations": '[vindr-cxr]\nannotations = "/data/vindr-cxr/annotations/annotations_test.csv"',
    "vindr-cxr.images": '[vindr-cxr]\nimages = "/data/vindr-cxr/1.0.0/test"',
    "mimic-cxr.reports": '[mimic-cxr]\nreports = "/data/mimic-cxr-reports"',
    "mimic-cxr.chexpert": '[mimic-cxr]\nchexpert = "/data/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-chexpert.csv"',
    "mimic-cxr.metadata": '[mimic-cxr]\nmetadata = "/data/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv"',
    "mimic-cxr.split": '[mimic-cxr]\nsplit = "/data/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv"',
    "mimic-cxr.images": '[mimic-cxr]\nimages = "/data/mimic-cxr-jpg/2.0.0"',
    "imagenome.gold": '[imagenome]\ngold = "/data/imagenome/gold_bbox_coordinate_annotations_1000images.csv"',
    "tune.manifest": '[tune]\nmanifest = "runs/curate/manifest.csv"',
    "tune.images": '[tune]\nimages = "/data/mimic-cxr-jpg/2.0.0"',
}
ENV_WHOLE_NUMBERS = {"ldm.batch": "CXRG_LDM_BATCH"}  # variables that must be whole numbers >= 1
DEFAULT = "default"
COMMAND_LINE = "command line"


def env(name: str, default: str | None = None) -> str | None:
    """A CXRG_* environment variable: the only place the package reads them."""
    assert name.startswith("CXRG_"), name
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_number(name: str, default: float) -> float:
    """A positive number from a CXRG_* variable (unset or empty: `default`); a bad value is a usage error
    (exit 2) naming the variable, the same for every numeric variable."""
    text = env(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"${name}={text!r} must be a positive number", hint=f"e.g. {name}={default:g}")
    return value


def check_number(name: str, value: Any, *, minimum: float | None = None, above: float | None = None,
                 maximum: float | None = None, whole: bool = False, where: str | None = None) -> Any:
    """`value` if it is a finite number (a whole one with `whole`) in range, else one UsageError line
    (exit 2) naming the setting: every numeric setting (cxrg.toml, -o, environment, flags) is checked here,
    so nan, inf, -3 or 0 never reach the pipeline as a silent or per-sample failure."""
    kind = "a whole number" if whole else "a finite number"
    bounds = [f">= {minimum:g}" if minimum is not None else "", f"> {above:g}" if above is not None else "",
              f"<= {maximum:g}" if maximum is not None else ""]
    wanted = " ".join([kind, *[b for b in bounds if b]])
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and (not whole or isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
          and math.isfinite(value)
          and (minimum is None or value >= minimum) and (above is None or value > above)
          and (maximum is None or value <= maximum))
    if not ok:
        raise UsageError(f"{name} = {value!r} must be {wanted}", where=where)
    return int(value) if whole else value


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "hpu", "mtia", "maia", "ipu", "xla", "meta", "hip", "ve", "fpga",
                "lazy", "vulkan", "mkldnn", "opengl", "opencl", "ideep", "privateuseone")
"""torch's device types: a device is `auto`, TYPE or TYPE:INDEX."""


def check_device(value: Any, source: str | None = None) -> str:
    """A device string as torch reads it (or `auto`), else one usage line naming where it came from."""
    text = value if isinstance(value, str) else ""
    kind, _, index = text.strip().partition(":")
    if text.strip() != "auto" and (kind not in DEVICE_TYPES or (index and not index.isdigit())
                                   or (":" in text and not index)):
        raise UsageError(f"device {value!r} is not a device", where=source,
                         hint="use cpu, cuda, cuda:N, mps or auto")
    return text


def plugin_filter() -> set[str] | None:
    """$CXRG_LOAD_PLUGINS: which third-party distributions' models to discover (comma-separated names; set
    but empty: none, only cxrg's own models). Unset: every installed plugin. As llm's LLM_LOAD_PLUGINS, it
    lets tests and scripts run the same whatever else is installed."""
    value = os.environ.get("CXRG_LOAD_PLUGINS")
    if value is None:
        return None
    return {name.strip().lower().replace("_", "-") for name in value.split(",") if name.strip()}


def debug() -> bool:
    return env("CXRG_DEBUG", "0") != "0"


def home() -> Path:
    """$CXRG_HOME, else ~/.cache/cxrg: the default weights folder and the home of config.toml."""
    value = env("CXRG_HOME")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "cxrg"


@dataclass
class ConfigFile:
    path: Path
    data: dict[str, Any]

    def lookup(self, key: str) -> tuple[bool, Any]:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node


@dataclass
class Config:
    """The resolved settings of one command: files in precedence order, command-line values, and a record of
    each value's source (for the run's config.json)."""

    files: list[ConfigFile] = field(default_factory=list)
    cli: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path | None:
        return self.files[0].path if self.files else None

    def resolve(self, key: str, default: Any = None) -> tuple[Any, str]:
        """(value, source) of 'weights' or 'ms-cxr.images', through the precedence list."""
        if self.cli.get(key) is not None:
            return self.cli[key], COMMAND_LINE
        for file in self.files:
            found, value = file.lookup(key)
            if found:
                return _checked(key, value, file), str(file.path)
        variable = ENVIRONMENT.get(key)
        value = env(variable) if variable else None
        if value is not None:
            if key in ENV_WHOLE_NUMBERS:
                return _env_whole(variable, value), f"${variable}"
            return (Path(value).expanduser() if key.split(".")[-1] in PATH_KEYS else value), f"${variable}"
        return default, DEFAULT

    def get(self, key: str, default: Any = None) -> Any:
        value, source = self.resolve(key, default)
        self.sources[key] = source
        if key == "device" and value is not None:
            check_device(value, source)
        return value

    def require(self, key: str, option: str | None = None) -> Any:
        """The value, or one clear error saying which key to set, with an example line."""
        value = self.get(key)
        if value is None:
            where = str(self.path) if self.path else "./cxrg.toml (or $CXRG_HOME/config.toml)"
            example = EXAMPLES.get(key, f"{key} = ...").replace("\n", " / ")
            how = f"pass {option} or set" if option else "set"
            raise UsageError(f"`{key}` is not configured", where=where, hint=f"{how} it, e.g. {example}")
        return value

    def table(self, key: str) -> dict[str, Any]:
        """A whole table ([ldm], [models.ldm]) merged over the files, the nearer file winning per key."""
        merged: dict[str, Any] = {}
        for file in reversed(self.files):
            found, value = file.lookup(key)
            if found:
                if not isinstance(value, dict):
                    raise InputError(f"`{key}` must be a table ([{key}])", where=str(file.path))
                merged.update({name: _checked(f"{key}.{name}", v, file) for name, v in value.items()})
                for name in value:
                    self.sources[f"{key}.{name}"] = str(file.path)
        return merged

    def model_options(self, model: str, declared: list[str], given: dict[str, Any] | None = None,
                      ldm_table: bool = False) -> dict[str, Any]:
        """Values of a model's declared options: the command line (`given`: -o and the shortcut flags),
        then per file [models.MODEL], [ldm] (`ldm_table`: the LDM models) and the top-level key, then the
        environment. Options set nowhere are left out (the model's own defaults apply)."""
        given = given or {}
        out: dict[str, Any] = {}
        for key in declared:
            label = f"models.{model}.{key}"
            if given.get(key) is not None:
                out[key], self.sources[label] = given[key], COMMAND_LINE
                continue
            for file in self.files:
                places = [f"models.{model}.{key}"] + ([f"ldm.{key}"] if ldm_table else [])
                places += [key] if key in TOP_LEVEL else []
                hit = next((p for p in places if file.lookup(p)[0]), None)
                if hit is not None:
                    out[key] = _checked(hit, file.lookup(hit)[1], file)
                    self.sources[label] = f"{file.path} [{hit}]"
                    break
            else:
                variable = ENVIRONMENT.get(key) or ENVIRONMENT.get(f"ldm.{key}" if ldm_table else "")
                text = env(variable) if variable else None
                if variable and text is not None:
                    whole = variable in ENV_WHOLE_NUMBERS.values()
                    out[key] = _env_whole(variable, text) if whole else text
                    self.sources[label] = f"${variable}"
        return out

    def record(self) -> dict[str, Any]:
        """What goes into config.json: the files read and the source of each value looked up."""
        return {"files": [str(f.path) for f in self.files], "sources": dict(sorted(self.sources.items()))}


def _env_whole(variable: str | None, text: str) -> int:
    try:
        value: Any = int(text.strip())
    except ValueError:
        value = text
    return int(check_number(f"${variable}", value, minimum=1, whole=True))


def _checked(key: str, value: Any, file: ConfigFile) -> Any:
    """Type-check a value from a file (one line naming the key and the file); resolve relative paths."""
    leaf = key.split(".")[-1]
    if leaf in PATH_KEYS:
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"`{key}` must be a path in quotes, got {value!r}", where=str(file.path),
                             hint=f'e.g. {key.split(".")[-1]} = "/data/..."')
        return (file.path.parent / Path(value).expanduser()).resolve()
    if (leaf in ("device", "dtype", "protocol") or key.startswith("choices.")) and not isinstance(value, str):
        raise InputError(f"`{key}` must be a string, got {value!r}", where=str(file.path),
                         hint=f'e.g. {leaf} = "{ {"device": "cpu", "dtype": "float32"}.get(leaf, "paper")}"')
    if key.startswith("ldm.") and leaf in LDM_TYPES:
        kind, example = LDM_TYPES[leaf]
        if not _is_kind(value, kind):
            raise UsageError(f"`{key}` must be {kind}, got {value!r}", where=str(file.path),
                             hint=f"e.g. {leaf} = {example}")
        check_ldm_value(key, value, str(file.path))
    return value


def check_ldm_value(key: str, value: Any, where: str | None = None) -> None:
    """The range of an [ldm] value (its type is checked by `_is_kind`): steps and batch >= 1, sigma a finite
    number >= 0, capture_steps [start, stop) with 0 <= start < stop, layers not empty."""
    leaf = key.split(".")[-1]
    if leaf in ("inference_steps", "batch"):
        check_number(f"`{key}`", value, minimum=1, whole=True, where=where)
    elif leaf == "smoothing_sigma":
        check_number(f"`{key}`", value, minimum=0, where=where)
    elif leaf == "capture_steps" and (len(value) != 2 or not 0 <= value[0] < value[1]):
        raise UsageError(f"`{key}` = {value!r} must be [start, stop) with 0 <= start < stop", where=where,
                         hint="e.g. capture_steps = [30, 60]")
    elif leaf == "layers" and not value:
        raise UsageError(f"`{key}` must name at least one cross-attention layer", where=where)


LDM_TYPES = {"inference_steps": ("a whole number", "100"), "batch": ("a whole number", "4"),
             "capture_steps": ("a list of whole numbers", "[30, 31, 32]"),
             "layers": ("a list of names in quotes", '["mid_block.attentions.0"]'),
             "smoothing_sigma": ("a number", "1.0"), "otsu": ("true or false", "true"),
             "timestep_spacing": ("text in quotes", '"trailing"'),
             "upsampling": ("text in quotes", '"nearest"'),
             "capture_order": ("text in quotes", '"denoising"'), "attention": ("text in quotes", '"sdpa"'),
             "batch_invariant": ("true or false", "true")}
"""The type of each [ldm] value in a configuration file (checked with one line naming the key)."""


def _is_kind(value: Any, kind: str) -> bool:
    if kind == "a whole number":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "a number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "true or false":
        return isinstance(value, bool)
    if kind == "a list of whole numbers":
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if kind == "a list of names in quotes":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


def config_paths(cwd: Path | None = None) -> list[Path]:
    found = []
    local = Path(cwd or Path.cwd()) / "cxrg.toml"
    if local.is_file():
        found.append(local)
    if env("CXRG_HOME"):
        user = home() / "config.toml"
        if user.is_file() and (not found or user.resolve() != found[0].resolve()):
            found.append(user)
    return found


def config_path(cwd: Path | None = None) -> Path | None:
    paths = config_paths(cwd)
    return paths[0] if paths else None


def unknown_keys(data: dict[str, Any]) -> list[str]:
    """Warnings for keys and sections this version does not know, with a did-you-mean."""
    known = set(TOP_LEVEL) | set(SECTIONS) | {"models"}
    notes = []
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            notes.append(f"unknown key `{key}`" + (f" (did you mean `{close[0]}`?)" if close else ""))
        elif key in SECTIONS and isinstance(value, dict):
            for sub in value:
                if sub not in SECTIONS[key]:
                    close = difflib.get_close_matches(sub, SECTIONS[key], n=1)
                    notes.append(f"unknown key `{key}.{sub}`" + (f" (did you mean `{close[0]}`?)"
                                                                 if close else ""))
    return notes


def load_config(cwd: Path | None = None, cli: dict[str, Any] | None = None, warn: bool = True) -> Config:
    files = []
    for path in config_paths(cwd):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the configuration: {exc}", where=str(path)) from exc
        if warn:
            import sys

            for note in unknown_keys(data):
                print(f"cxrg: warning: {note} in {path} is ignored", file=sys.stderr, flush=True)
        files.append(ConfigFile(path, data))
    return Config(files, {k: v for k, v in (cli or {}).items() if v is not None})


def weights_root(weights_dir: str | Path | None = None) -> Path:
    """The weights folder every model looks in (plugins too): --weights, else `weights` in the
    configuration files, else $CXRG_WEIGHTS, else $CXRG_HOME, else ~/.cache/cxrg."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    configured = load_config(warn=False).get("weights")
    return Path(configured) if configured is not None else home()
