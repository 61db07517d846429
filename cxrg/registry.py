"""The model protocol and plugin discovery.

Every model, built-in or third-party, is a class (or factory) registered under the entry-point group
`cxrg.models`; the entry-point name is the model id. Discovery reads installed metadata only; a model's
module is imported when the model is used, so a broken plugin never breaks the CLI or the other models.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from cxrg.errors import CxrgError, UsageError

ENTRY_POINT_GROUP = "cxrg.models"
KNOWN_PLUGINS = {"biovil": "cxrg-biovil", "biovil-t": "cxrg-biovil", "maira-2": "cxrg-maira2"}
PLUGIN_INSTALL = {
    "cxrg-biovil": "it needs its own environment (torch 2.14.1 + torchvision), built in two steps as "
                   "plugins/README.md shows (or `nox -s plugins`)",
    "cxrg-maira2": "install it with `pip install -e plugins/cxrg-maira2` (see plugins/README.md)",
}
"""First-party models that live in their own distributions (plugins/), for a helpful message."""


class PluginLoadError(CxrgError):
    """A plugin failed to import, construct or load its weights."""


class GroundTruthAccessError(CxrgError):
    """A model that does not declare `uses_ground_truth` tried to read the boxes."""


@dataclass(frozen=True)
class WeightFile:
    """One file or folder a model needs: where it goes under the weights folder and how to get it."""

    path: str
    description: str
    how_to_get: str


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    licence: str
    description: str
    weights: tuple[WeightFile, ...] = ()
    uses_ground_truth: bool = False
    metrics: tuple[str, ...] = ("cnr", "miou")
    """The metrics that are meaningful for this model (MAIRA-2's binary boxes: mIoU only)."""
    prompts: str = "free-text"
    """"vocabulary" for a model that only understands '{location} {pathology}' prompts (prior, ldm): the
    harness and `ground` give it the phrase read by cxrg.phrases.normalise; a "free-text" model gets the
    dataset's text as written (the published protocols)."""
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "licence": self.licence,
            "description": self.description, "uses_ground_truth": self.uses_ground_truth,
            "metrics": list(self.metrics), "prompts": self.prompts, "notes": self.notes,
            "weights": [vars(w) for w in self.weights],
        }


@dataclass(frozen=True)
class HeatmapQuery:
    """What a model sees for one sample. The boxes are readable only by models that declare they use them."""

    image: np.ndarray
    """float32 H x W in [0, 1] at the original resolution."""
    prompt: str
    image_path: Path | None = None
    _boxes: np.ndarray | None = field(default=None, repr=False)
    ground_truth_allowed: bool = False

    @property
    def boxes(self) -> np.ndarray:
        """Ground-truth boxes, xyxy in original pixels (only for models whose card says uses_ground_truth)."""
        if not self.ground_truth_allowed:
            raise GroundTruthAccessError(
                "this model read the ground-truth boxes but its card does not declare uses_ground_truth",
                hint="set uses_ground_truth=True in the ModelCard if the model is an oracle")
        if self._boxes is None:
            raise CxrgError("this sample has no ground-truth boxes")
        return self._boxes


Query = HeatmapQuery
"""The name plugins written for cxrg 0.1 import; new code uses HeatmapQuery."""


def make_query(card: ModelCard, image: np.ndarray, prompt: str, boxes: np.ndarray | None = None,
               image_path: Path | None = None) -> HeatmapQuery:
    """Build the query the way the harness does: boxes handed over only when the card asks for them."""
    return HeatmapQuery(image=image, prompt=prompt, image_path=image_path, _boxes=boxes,
                 ground_truth_allowed=card.uses_ground_truth)


@runtime_checkable
class HeatmapModel(Protocol):
    """A phrase-grounding model: construction is cheap, `load` finds weights, `heatmap` does the work.

    `heatmap` returns float32 H x W at the query image's size, NaN where the model saw no pixel. The
    harness, not the model, min-max normalises before scoring.

    Optional: a model with settings declares them as a frozen dataclass `Options` (fields made with
    `option(default, help)`); `load` then receives `options=` an instance (command line `-o key=value`,
    `[models.NAME]` in cxrg.toml; `cxrg models info NAME` lists them). A model that can ground several
    prompts of one image at once more cheaply may define `heatmaps(queries)`; the harness calls it with
    all of one image's queries.
    """

    card: ModelCard

    def load(self, weights_dir: Path | None = None, device: str = "cpu") -> None: ...

    def heatmap(self, query: HeatmapQuery) -> np.ndarray: ...


# ------------------------------------------------------------------------------------ model options

OPTION_KINDS = ("str", "int", "float", "bool", "path", "ints", "strs")


def option(default: Any, help: str, kind: str = "str", choices: tuple[str, ...] = (),
           minimum: float | None = None) -> Any:
    """A field of a model's Options dataclass: its default, one line of help, how text is parsed, and for
    numbers the smallest value allowed (an int or float option is always finite: nan and inf are refused)."""
    assert kind in OPTION_KINDS, kind
    return field(default=default, metadata={"help": help, "kind": kind, "choices": choices,
                                            "minimum": minimum})


@dataclass(frozen=True)
class OptionInfo:
    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


def describe_options(model: Any) -> list[OptionInfo]:
    """The options a model declares (none for a model without an `Options` dataclass)."""
    options = getattr(model, "Options", None)
    if options is None or not dataclasses.is_dataclass(options):
        return []
    return [OptionInfo(f.name, f.metadata.get("kind", "str"), f.default, f.metadata.get("help", ""),
                       tuple(f.metadata.get("choices", ())), f.metadata.get("minimum"))
            for f in dataclasses.fields(options)]


def _parse_option(info: OptionInfo, value: Any, model: str) -> Any:
    def bad(expected: str) -> UsageError:
        return UsageError(f"option {info.name}={value!r} of model '{model}' is not {expected}",
                          hint=f"{info.name}: {info.help}")

    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else None
    try:
        if info.kind == "bool":
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return text.lower() in ("1", "true", "yes", "on")
            raise bad("true or false")
        if info.kind in ("int", "float"):
            whole = info.kind == "int"
            if isinstance(value, bool) or not isinstance(value, int | str if whole else int | float | str):
                raise bad("a whole number" if whole else "a number")
            number = int(value) if whole else float(value)
            if not math.isfinite(number) or (info.minimum is not None and number < info.minimum):
                raise bad(("a whole number" if whole else "a finite number")
                          + (f" >= {info.minimum:g}" if info.minimum is not None else ""))
            return number
        if info.kind == "path":
            if not isinstance(value, str | Path) or not str(value).strip():
                raise bad("a path")
            return Path(value).expanduser()
        if info.kind in ("ints", "strs"):
            items = [v.strip() for v in text.split(",") if v.strip()] if text is not None else value
            if not isinstance(items, list | tuple):
                raise bad("a list")
            return tuple(int(v) for v in items) if info.kind == "ints" else tuple(str(v) for v in items)
        if not isinstance(value, str):
            raise bad("text")
    except ValueError:
        raise bad({"int": "a whole number", "float": "a number", "ints": "a list of whole numbers"}
                  .get(info.kind, "valid")) from None
    if info.choices and value not in info.choices:
        raise bad(f"one of {', '.join(info.choices)}")
    return value


def check_option_names(name: str, model: Any, keys: Iterable[str]) -> dict[str, OptionInfo]:
    """The model's options by name; a key it does not declare is a usage error with a did-you-mean."""
    infos = {info.name: info for info in describe_options(model)}
    unknown = sorted(set(keys) - set(infos))
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(infos), n=1)
        raise UsageError(f"model '{name}' has no option {unknown[0]!r}",
                         hint=(f"did you mean {close[0]!r}? " if close else "")
                         + (f"its options: {', '.join(infos)}" if infos else "it takes no options"))
    return infos


def make_options(name: str, model: Any, values: Mapping[str, Any]) -> Any:
    """The model's Options instance from raw values (text from the command line or typed from TOML)."""
    infos = check_option_names(name, model, values)
    if not infos:
        return None
    parsed = {key: _parse_option(infos[key], value, name) for key, value in values.items()}
    return model.Options(**parsed)


@dataclass(frozen=True)
class PluginEntry:
    """A discovered model: its id, where it comes from, and how to import it. Nothing imported yet."""

    name: str
    value: str
    distribution: str
    version: str
    conflict: str = ""
    """Set when two distributions register this name: the name is disabled (this says why)."""

    def load_factory(self) -> Callable[[], HeatmapModel]:
        from cxrg.runs import is_contained

        if self.conflict:
            raise PluginLoadError(self.conflict,
                                  hint="uninstall one of them; the other models are unaffected")
        try:
            factory = metadata.EntryPoint(self.name, self.value, ENTRY_POINT_GROUP).load()
        except BaseException as exc:  # a plugin's import error (even SystemExit) is its own, never the CLI's
            if not is_contained(exc):
                raise
            raise PluginLoadError(f"model '{self.name}' failed to import: {type(exc).__name__}: {exc}",
                                  where=f"{self.value} from {self.distribution} {self.version}",
                                  hint="reinstall the plugin or check its dependencies") from exc
        return factory


def discover() -> dict[str, PluginEntry]:
    """All models installed in this environment, by name. The entry-point name is a model's identity: when
    two distributions register one name, that name alone is disabled (its entry carries a `conflict`
    naming both, raised when it is used); every other model keeps working."""
    from cxrg.config import plugin_filter

    allowed = plugin_filter()
    found: dict[str, PluginEntry] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        entry = PluginEntry(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?")
        own = entry.distribution.lower() == "cxrg"
        if allowed is not None and not own and entry.distribution.lower().replace("_", "-") not in allowed:
            continue
        previous = found.get(ep.name)
        if previous is not None and previous.distribution != entry.distribution:
            found[ep.name] = dataclasses.replace(previous, conflict=(
                f"model '{ep.name}' is disabled: two distributions register it: "
                f"{previous.distribution} {previous.version} and {entry.distribution} {entry.version}"))
            continue
        found.setdefault(ep.name, entry)
    return dict(sorted(found.items()))


def create_model(name: str, entries: dict[str, PluginEntry] | None = None) -> HeatmapModel:
    """Import and construct a model by id (weights are not loaded yet)."""
    entries = discover() if entries is None else entries
    if name not in entries:
        known = ", ".join(entries) or "none"
        if name in KNOWN_PLUGINS:
            plugin = KNOWN_PLUGINS[name]
            raise PluginLoadError(f"model '{name}' is not installed: it comes with the plugin {plugin}",
                                  hint=f"{PLUGIN_INSTALL[plugin]}; installed models: {known}")
        close = difflib.get_close_matches(name, [*entries, *KNOWN_PLUGINS], n=1)
        raise UsageError(f"unknown model '{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""),
                         hint=f"installed models: {known}; see `cxrg models list`")
    from cxrg.runs import is_contained

    entry = entries[name]
    factory = entry.load_factory()
    try:
        model = factory()
    except CxrgError:
        raise
    except BaseException as exc:
        if not is_contained(exc):
            raise
        raise PluginLoadError(f"model '{name}' failed to construct: {type(exc).__name__}: {exc}",
                              where=f"{entry.value} from {entry.distribution}") from exc
    card = getattr(model, "card", None)
    if not isinstance(card, ModelCard) or not callable(getattr(model, "heatmap", None)):
        raise PluginLoadError(f"model '{name}' does not follow the HeatmapModel protocol",
                              where=f"{entry.value} from {entry.distribution}",
                              hint="it needs a `card` (cxrg.registry.ModelCard), `load()` and `heatmap()`")
    check_identity(name, card, f"{entry.value} from {entry.distribution}")
    return model


def check_identity(name: str, card: ModelCard, where: str | None = None) -> None:
    """The entry-point name is a model's identity (results are stored under it): a card that calls itself
    something else is refused, so a plugin cannot pass for, or overwrite the results of, another model."""
    if card.name != name:
        raise PluginLoadError(f"model '{name}' has a card named '{card.name}'; a model's card must carry "
                              "its entry-point name", where=where,
                              hint="the plugin's author must set ModelCard(name=...) to the registered name")


def load_model(name: str, weights_dir: Path | None = None, device: str = "cpu",
               entries: dict[str, PluginEntry] | None = None,
               options: Mapping[str, Any] | None = None, model: Any = None) -> HeatmapModel:
    """Construct (unless given) and load a model with its options; any failure becomes a PluginLoadError
    naming it."""
    from cxrg.runs import is_contained

    model = create_model(name, entries) if model is None else model
    check_identity(name, model.card)
    built = make_options(name, model, options or {})
    try:
        if built is not None and "options" in inspect.signature(model.load).parameters:
            model.load(weights_dir=weights_dir, device=device, options=built)
        else:
            model.load(weights_dir=weights_dir, device=device)
    except CxrgError:
        raise
    except BaseException as exc:  # SystemExit or a stray KeyboardInterrupt from plugin code is its error
        if not is_contained(exc):
            raise
        raise PluginLoadError(f"model '{name}' failed to load: {type(exc).__name__}: {exc}") from exc
    return model


def batched_heatmaps(model: Any, queries: list) -> list[Any] | None:
    """One `model.heatmaps(queries)` call (the protocol's optional batched method): its maps, or None when
    the model has no such method, the call raised a contained error, or it returned another count. The
    caller then asks query by query, so one bad image or prompt fails alone."""
    from cxrg.errors import CxrgError
    from cxrg.runs import is_contained

    batched = getattr(model, "heatmaps", None)
    if not callable(batched):
        return None
    try:
        maps = list(batched(queries))
        if len(maps) != len(queries):
            raise CxrgError(f"heatmaps() returned {len(maps)} maps for {len(queries)} prompts")
        return maps
    except BaseException as exc:
        if not is_contained(exc):
            raise
        return None
