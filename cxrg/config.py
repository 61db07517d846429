"""The user's configuration file: where their datasets, weights and runs are, so commands need no flags.

Looked up as ./cxrg.toml, else $CXRG_HOME/config.toml (TOML, read with the standard library). Relative paths
are relative to the file's folder. Command-line options always win over the file. Keys:

    weights = "/data/cxrg-weights"        # the weights folder (as --weights)
    embeddings = "..."                    # tuned embeddings for `ldm` (default <weights>/tuned_embeddings...)
    lut = "lut.json"                      # the anatomical LUT (default: the shipped approximation)
    device = "cpu"
    dtype = "float32"

    [ms-cxr]      annotations = ".../MS_CXR_Local_Alignment_v1.1.0.csv", images = ".../mimic-cxr-jpg"
    [vindr-cxr]   annotations = ".../annotations/annotations_test.csv", images = ".../test"
    [mimic-cxr]   reports = ".../mimic-cxr-reports", chexpert = ".../mimic-cxr-2.0.0-chexpert.csv",
                  metadata = ".../mimic-cxr-2.0.0-metadata.csv", images = ".../mimic-cxr-jpg"
    [imagenome]   gold = ".../gold_bbox_coordinate_annotations_1000images.csv"
    [tune]        manifest = "runs/curate/manifest.csv", images = ".../mimic-cxr-jpg", out = "runs/tune"
    [ldm]         heatmap settings: inference_steps, capture_steps = [start, stop], layers, smoothing_sigma,
                  otsu (ldm-frozen), timestep_spacing (defaults: the paper's, see docs/ldm.md)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrg.errors import InputError, UsageError

PATH_KEYS = {"weights", "embeddings", "lut", "annotations", "images", "reports", "chexpert", "metadata",
             "gold", "manifest", "out"}
EXAMPLES = {
    "weights": 'weights = "/data/cxrg-weights"',
    "ms-cxr.annotations": '[ms-cxr]\nannotations = "/data/ms-cxr/MS_CXR_Local_Alignment_v1.1.0.csv"',
    "ms-cxr.images": '[ms-cxr]\nimages = "/data/mimic-cxr-jpg/2.0.0"',
    "vindr-cxr.annotations": '[vindr-cxr]\nannotations = "/data/vindr-cxr/annotations/annotations_test.csv"',
    "vindr-cxr.images": '[vindr-cxr]\nimages = "/data/vindr-cxr/1.0.0/test"',
    "mimic-cxr.reports": '[mimic-cxr]\nreports = "/data/mimic-cxr-reports"',
    "mimic-cxr.chexpert": '[mimic-cxr]\nchexpert = "/data/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-chexpert.csv"',
    "mimic-cxr.metadata": '[mimic-cxr]\nmetadata = "/data/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-metadata.csv"',
    "mimic-cxr.images": '[mimic-cxr]\nimages = "/data/mimic-cxr-jpg/2.0.0"',
    "imagenome.gold": '[imagenome]\ngold = "/data/imagenome/gold_bbox_coordinate_annotations_1000images.csv"',
    "tune.manifest": '[tune]\nmanifest = "runs/curate/manifest.csv"',
    "tune.images": '[tune]\nimages = "/data/mimic-cxr-jpg/2.0.0"',
}
DATASETS = {
    "ms-cxr": ("annotations", "images"),
    "vindr-cxr": ("annotations", "images"),
    "mimic-cxr": ("reports", "chexpert", "metadata", "images"),
    "imagenome": ("gold",),
}


@dataclass
class Config:
    path: Path | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """'weights' or 'ms-cxr.images': the value (paths resolved against the file's folder) or default."""
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        if key.split(".")[-1] in PATH_KEYS and isinstance(node, str) and self.path is not None:
            return (self.path.parent / Path(node).expanduser()).resolve()
        return node

    def require(self, key: str, option: str | None = None) -> Any:
        """The value, or one clear error saying which key to set, with an example line."""
        value = self.get(key)
        if value is None:
            where = str(self.path) if self.path else "./cxrg.toml (or $CXRG_HOME/config.toml)"
            example = EXAMPLES.get(key, f"{key} = ...").replace("\n", " / ")
            how = f"pass {option} or set" if option else "set"
            raise UsageError(f"`{key}` is not configured", where=where, hint=f"{how} it, e.g. {example}")
        return value


def config_path(cwd: Path | None = None) -> Path | None:
    local = Path(cwd or Path.cwd()) / "cxrg.toml"
    if local.is_file():
        return local
    if os.environ.get("CXRG_HOME"):
        home = Path(os.environ["CXRG_HOME"]).expanduser() / "config.toml"
        if home.is_file():
            return home
    return None


def load_config(cwd: Path | None = None) -> Config:
    path = config_path(cwd)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the configuration: {exc}", where=str(path)) from exc
    return Config(path, data)


def pick(cli_value: Any, config: Config, key: str, default: Any = None) -> Any:
    """Command line first, then the configuration file, then the default."""
    if cli_value is not None:
        return cli_value
    return config.get(key, default)
