"""The look-up table (LUT): one or two 2-D Gaussians per location, in 512 x 512 model space.

How a location becomes its target
    Every location is built from Chest ImaGenome anatomical regions (``location_regions``):

    * a one-sided location is one region: "left" -> "left lung", "left apical" -> "left apical zone",
      "left upper/middle/lower" -> "left upper/mid/lower lung zone", "left costophrenic" -> "left
      costophrenic angle", and both "left pleural" and "left base" -> "left lower lung zone";
    * "lingular" -> "left mid lung zone"; "cardiomegaly" -> "cardiac silhouette";
    * a bilateral location is the union of its two sides, kept as two components (right region first, i.e.
      image-left first), as the paper's Figure 3 draws them; "pulmonary" is likewise ("right lung",
      "left lung").

    Rendering draws each component with peak 1 and combines components, and several locations, by the
    pixel-wise maximum, so a bilateral target is two blobs of height 1, never one blurred blob between them.

Laterality: the patient's left is on the image's right, so "left ..." components have mu_x > 256.

JSON file (schema_version 1)::

    {"schema": "cxrg.lut", "schema_version": 1, "size": 512,
     "coordinates": "model pixels of the size x size input (resize shortest side, centre crop), at edges",
     "metadata": {"source": ..., "approximation": bool, "note": ..., ...},
     "locations": {"left apical": [{"mu_x": ., "mu_y": ., "sigma_x": ., "sigma_y": .}], ...}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cxrg.anatomy.gaussians import Gaussian2D, box_gaussian, render_gaussians, w2_squared
from cxrg.anatomy.gaussians import jitter as jitter_gaussians
from cxrg.errors import InputError, UsageError
from cxrg.runs import atomic_write_json
from cxrg.vocab import LOCATIONS, Prompt, merge_bilateral, split_location

SCHEMA = "cxrg.lut"
SCHEMA_VERSION = 1
COORDINATES = "model pixels of the size x size input (resize shortest side, centre crop), at pixel edges"
DEFAULT_LUT_FILE = "default_lut.json"

# Zone of a location -> Chest ImaGenome region name after the side ("left " / "right ").
ZONE_REGION: dict[str, str] = {
    "": "lung",
    "apical": "apical zone",
    "upper": "upper lung zone",
    "middle": "mid lung zone",
    "lower": "lower lung zone",
    "costophrenic": "costophrenic angle",
    "pleural": "lower lung zone",
    "base": "lower lung zone",
}
UNPAIRED_REGIONS: dict[str, tuple[str, ...]] = {
    "lingular": ("left mid lung zone",),
    "cardiomegaly": ("cardiac silhouette",),
    "pulmonary": ("right lung", "left lung"),
}


def location_regions(location: str) -> tuple[str, ...]:
    """The Chest ImaGenome regions a location is made of (right before left for two-sided ones)."""
    side, zone = split_location(location)
    if side is None:
        return UNPAIRED_REGIONS[zone]
    sides = ("right", "left") if side == "bilateral" else (side,)
    return tuple(f"{s} {ZONE_REGION[zone]}" for s in sides)


REGIONS: tuple[str, ...] = tuple(sorted({r for loc in LOCATIONS for r in location_regions(loc)}))


class Lut:
    """Per location a tuple of Gaussian components (1, or 2 for bilateral locations and "pulmonary")."""

    def __init__(self, components: Mapping[str, Sequence[Gaussian2D]],
                 metadata: Mapping[str, Any] | None = None, size: int = 512) -> None:
        missing = [loc for loc in LOCATIONS if loc not in components]
        unknown = [loc for loc in components if loc not in LOCATIONS]
        if missing or unknown:
            raise InputError("LUT locations do not match the vocabulary",
                             hint=f"missing: {missing or 'none'}; unknown: {unknown or 'none'}")
        self.components: dict[str, tuple[Gaussian2D, ...]] = {}
        for loc in LOCATIONS:
            comps = tuple(components[loc])
            if len(comps) != len(location_regions(loc)):
                raise InputError(f"LUT location {loc!r} has {len(comps)} components",
                                 hint=f"expected {len(location_regions(loc))}: {location_regions(loc)}")
            self.components[loc] = comps
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.size = int(size)

    def __getitem__(self, location: str) -> tuple[Gaussian2D, ...]:
        if location not in self.components:
            split_location(location)  # raises with the list of valid locations
        return self.components[location]

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Lut) and self.components == other.components
                and self.metadata == other.metadata and self.size == other.size)

    def __repr__(self) -> str:
        return f"Lut(size={self.size}, source={self.metadata.get('source')!r})"

    # -- rendering ------------------------------------------------------------------------------------
    def gaussians(self, locations: str | Prompt | Iterable[str]) -> tuple[Gaussian2D, ...]:
        """All components of one location, a Prompt's locations, or a list of locations."""
        if isinstance(locations, Prompt):
            locations = locations.locations
        elif isinstance(locations, str):
            locations = (locations,)
        locations = tuple(locations)
        if not locations:
            raise InputError("no location to render", hint="a prompt without a location has no atlas target")
        return tuple(g for loc in locations for g in self[loc])

    def render(self, locations: str | Prompt | Iterable[str], shape: int | Sequence[int] | None = None,
               jitter: np.random.Generator | None = None, jitter_fraction: float = 0.05) -> np.ndarray:
        """The target map of one or several locations: float32, peak 1, the model frame drawn at ``shape``
        (an int for a square map, or (H, W); default the LUT size). Components and locations combine by
        maximum.

        With ``jitter`` (a seeded numpy Generator) every component's mu and sigma move by up to
        +-``jitter_fraction`` of the LUT size (see ``gaussians.jitter``).
        """
        comps = self.gaussians(locations)
        if jitter is not None:
            comps = jitter_gaussians(comps, jitter, fraction=jitter_fraction, size=self.size)
        return render_gaussians(comps, self.size if shape is None else shape, size=self.size)

    # -- files ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "size": self.size,
            "coordinates": COORDINATES,
            "metadata": self.metadata,
            "locations": {loc: [{"mu_x": g.mu_x, "mu_y": g.mu_y, "sigma_x": g.sigma_x, "sigma_y": g.sigma_y}
                                for g in comps] for loc, comps in self.components.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "LUT") -> Lut:
        hint = "rebuild it with `cxrg lut build` or use the default LUT"
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise InputError("not a cxrg LUT file (no \"schema\": \"cxrg.lut\")", where=where, hint=hint)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise InputError(f"LUT schema_version {data.get('schema_version')!r} is not supported",
                             where=where, hint=f"this cxrg reads version {SCHEMA_VERSION}; {hint}")
        size, locations = data.get("size"), data.get("locations")
        if not isinstance(size, int | float) or isinstance(size, bool) or size <= 0:
            raise InputError(f"LUT size {size!r} is not a positive number", where=where, hint=hint)
        if not isinstance(locations, dict):
            raise InputError("LUT has no \"locations\" object", where=where, hint=hint)
        components: dict[str, list[Gaussian2D]] = {}
        for loc, comps in locations.items():
            try:
                components[loc] = [Gaussian2D(float(c["mu_x"]), float(c["mu_y"]),
                                              float(c["sigma_x"]), float(c["sigma_y"])) for c in comps]
            except (TypeError, KeyError, ValueError, InputError) as exc:
                raise InputError(f"LUT location {loc!r} is malformed: {exc}", where=where,
                                 hint="each component needs finite mu_x, mu_y and positive sigma_x, sigma_y",
                                 ) from None
        try:
            return cls(components, data.get("metadata") or {}, size=int(size))
        except InputError as exc:
            raise InputError(exc.what, where=where, hint=exc.hint) from None

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Lut:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError("LUT file not found", where=str(path),
                             hint="build one with `cxrg lut build --imagenome GOLD_CSV`, or omit --lut",
                             ) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read LUT JSON: {exc}", where=str(path)) from None
        return cls.from_dict(data, where=str(path))

    @classmethod
    def default(cls) -> Lut:
        """The LUT shipped with cxrg: an approximation from published proportions (see its metadata)."""
        text = resources.files("cxrg.anatomy").joinpath(DEFAULT_LUT_FILE).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text), where=f"cxrg/anatomy/{DEFAULT_LUT_FILE}")



def active_lut(weights_dir: str | Path | None = None, explicit: str | Path | None = None) -> Lut:
    """The LUT in force: `explicit` (--lut, `lut` in cxrg.toml, $CXRG_LUT: resolved by the caller through
    cxrg.config), else lut.json in the weights folder or $CXRG_HOME, else the shipped approximation."""
    from cxrg.config import env, home

    if explicit:
        return Lut.load(explicit)
    folders = [Path(weights_dir)] if weights_dir else []
    if env("CXRG_HOME"):
        folders.append(home())
    for folder in folders:
        if (folder / "lut.json").is_file():
            return Lut.load(folder / "lut.json")
    return Lut.default()


def lut_from_regions(regions: Mapping[str, Gaussian2D], metadata: Mapping[str, Any] | None = None,
                     size: int = 512) -> Lut:
    """Assemble the 27 locations from per-region Gaussians (see the module docstring for the mapping)."""
    missing = [r for r in REGIONS if r not in regions]
    if missing:
        raise InputError(f"no usable boxes for the regions {missing}",
                         hint=f"the LUT needs every one of: {', '.join(REGIONS)}")
    meta = dict(metadata or {})
    meta.setdefault("location_regions", {loc: list(location_regions(loc)) for loc in LOCATIONS})
    return Lut({loc: tuple(regions[r] for r in location_regions(loc)) for loc in LOCATIONS}, meta, size=size)


def single_component_locations(lut: Lut) -> tuple[str, ...]:
    """Locations with one Gaussian: the one-sided ones, "lingular" and "cardiomegaly"."""
    return tuple(loc for loc in LOCATIONS if len(lut[loc]) == 1)


def nearest_location(box_xyxy_model: Sequence[float], lut: Lut,
                     candidates: Iterable[str] | None = None) -> str:
    """The single-component location nearest a box (model pixels, xyxy) by squared W2 (eq. 7).

    The box becomes a Gaussian by eq. 6 (sigma = extent / 6, as for the LUT). Bilateral locations are not
    candidates: they arise when boxes on both sides match left X and right X and the list is merged with
    ``merge_bilateral`` (see ``locations_for_boxes``). Ties go to the earlier location in LOCATIONS: as
    "X pleural" and "X base" share the lower lung zone with "X lower", and "lingular" the left mid lung zone
    with "left middle", the default candidates return "X lower" and "left middle" for those regions; pass
    ``candidates`` to prefer others (e.g. "left pleural" for effusion boxes).
    """
    names = single_component_locations(lut) if candidates is None else tuple(candidates)
    if not names:
        raise UsageError("no candidate locations to match against")
    for loc in names:
        if len(lut[loc]) != 1:
            raise UsageError(f"candidate {loc!r} has {len(lut[loc])} components",
                             hint="match single-component locations; merge the sides with merge_bilateral")
    g = box_gaussian(box_xyxy_model)
    distances = [w2_squared(g, lut[loc][0]) for loc in names]
    return names[int(np.argmin(distances))]


def locations_for_boxes(boxes_xyxy_model: Iterable[Sequence[float]], lut: Lut,
                        candidates: Iterable[str] | None = None) -> tuple[str, ...]:
    """Nearest location of each box, then left/right pairs merged into bilateral ones (box order kept)."""
    cands = None if candidates is None else tuple(candidates)
    return merge_bilateral(nearest_location(box, lut, cands) for box in boxes_xyxy_model)
