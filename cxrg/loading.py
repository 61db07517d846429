"""Load the models a command names, each with its options resolved through cxrg.config.

`-o key=value` sets an option of every named model that declares it; `-o MODEL.key=value` of one model. A key
no named model declares is a usage error (with the options they do declare). The shortcut flags (`--dtype`,
`--embeddings`, `--lut`) are options too, given to the models that declare them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cxrg.config import Config
from cxrg.errors import CxrgError, UsageError
from cxrg.registry import (
    HeatmapModel,
    PluginEntry,
    check_option_names,
    create_model,
    describe_options,
    discover,
    load_model,
)

LDM_TABLE_MODELS = ("ldm", "ldm-frozen")
"""Models whose options [ldm] in cxrg.toml sets."""


def parse_option_pairs(pairs: Sequence[str] | None) -> dict[str, dict[str, str]]:
    """['dtype=bfloat16', 'ldm.batch=4'] -> {'*': {'dtype': 'bfloat16'}, 'ldm': {'batch': '4'}}."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"-o {pair!r} is not key=value", hint="e.g. -o dtype=bfloat16 or -o ldm.batch=4")
        model, dot, name = key.rpartition(".")
        out.setdefault(model if dot else "*", {})[name if dot else key] = value
    return out


def options_for(name: str, model: Any, cfg: Config, pairs: dict[str, dict[str, str]],
                shortcuts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The option values of one model: command line, then configuration files, then the environment."""
    declared = [info.name for info in describe_options(model)]
    given = {k: v for k, v in (shortcuts or {}).items() if k in declared and v is not None}
    given.update({k: v for k, v in pairs.get("*", {}).items() if k in declared})
    given.update(pairs.get(name, {}))  # unknown keys for this model are refused by make_options
    return cfg.model_options(name, declared, given, ldm_table=name in LDM_TABLE_MODELS)


def check_pairs(names: Sequence[str], models: dict[str, Any], pairs: dict[str, dict[str, str]]) -> None:
    """Every -o key must be declared by some named model; a MODEL. prefix must name one of them, and that
    model must declare the key."""
    for model in pairs:
        if model != "*" and model not in names:
            raise UsageError(f"-o {model}.… names a model that is not in this command's models",
                             hint=f"models: {', '.join(names)}")
        if model in models:
            check_option_names(model, models[model], pairs[model])
    declared = {info.name for m in models.values() for info in describe_options(m)}
    for key in pairs.get("*", {}):
        if key not in declared:
            raise UsageError(f"no model here has an option {key!r}",
                             hint=f"options: {', '.join(sorted(declared)) or 'none'} "
                                  "(see `cxrg models info NAME`)")


def load_models(names: Sequence[str], cfg: Config, weights: Path | None, device: str,
                pairs: dict[str, dict[str, str]], shortcuts: dict[str, Any] | None = None,
                strict: bool = True, warn: Callable[[str], None] | None = None,
                entries: dict[str, PluginEntry] | None = None
                ) -> tuple[dict[str, HeatmapModel], dict[str, str], dict[str, dict[str, Any]]]:
    """(loaded models, load errors by name, the options each was given). With strict=False a model that
    fails to construct or load is reported through `warn` and the others run."""
    entries = discover() if entries is None else entries
    constructed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in names:
        try:
            constructed[name] = create_model(name, entries)
        except CxrgError as exc:
            if strict or isinstance(exc, UsageError):
                raise
            errors[name] = exc.one_line()
    check_pairs(names, constructed, pairs)
    loaded: dict[str, HeatmapModel] = {}
    used: dict[str, dict[str, Any]] = {}
    for name, model in constructed.items():
        values = options_for(name, model, cfg, pairs, shortcuts)
        used[name] = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        try:
            loaded[name] = load_model(name, weights, device, entries, options=values, model=model)
        except CxrgError as exc:
            if strict or isinstance(exc, UsageError):  # a bad setting stops the command (exit 2)
                raise
            errors[name] = exc.one_line()
    for name, text in errors.items():
        if warn is not None:
            warn(f"cxrg: warning: model {name} not run: {text}")
    return loaded, errors, used
