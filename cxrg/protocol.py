"""The protocol of a run: every choice that moves the paper's tables, in one table.

`paper` reproduces the paper (Vilouras et al., MIDL 2026 submission) as closely as its text allows and,
where the text is silent, the Vilouras 2024 code (vios-s/ldm-phrase-grounding). `cxrg` keeps cxrg's
documented improvements. Each choice stays settable on its own; a command resolves it as

    explicit option (command line or a library argument) > [choices] in cxrg.toml > the protocol's value,

and the protocol itself as `--protocol` > `protocol = "..."` in cxrg.toml > "paper". The run's config.json
records the protocol and every resolved choice with its source (`Resolved.record`). docs/decisions.md
holds the same table for readers. Torch-free: the CLI imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cxrg.errors import UsageError

EXTRACTOR_HELP = ("How phrases become locations: radgraph (RadGraph-XL alone; the paper protocol's default), "
                  "rules, hybrid (both, merged), or auto (hybrid when the radgraph package and the "
                  "RadGraph-XL weights are found, else rules, with a note; the cxrg protocol's default).")
PROTOCOL_HELP = ("paper (default: the paper's choices, else the Vilouras 2024 code's) or cxrg (cxrg's "
                 "improvements); `protocol` in cxrg.toml; each choice can be set alone (docs/decisions.md).")
PROTOCOLS = ("paper", "cxrg")
DEFAULT_PROTOCOL = "paper"


@dataclass(frozen=True)
class Choice:
    name: str
    paper: Any
    cxrg: Any
    values: tuple[Any, ...]
    commands: tuple[str, ...]
    """The commands whose results it moves."""
    setting: str
    """How to set it alone: the option or setting name."""
    paper_says: str
    """The paper's section (and a few words of it), or "silent"."""
    code_2024: str
    """What the Vilouras 2024 code does (file and line), or "-" where it has no such step."""

    def value(self, protocol: str) -> Any:
        return self.paper if protocol == "paper" else self.cxrg


CHOICES: tuple[Choice, ...] = (
    Choice("extractor", "radgraph", "auto", ("auto", "rules", "radgraph", "hybrid"), ("curate", "bench"),
           "--extractor",
           "Sec. 3.2, 4.1, App. I: RadGraph-XL's ANAT-DP entities; pairs without one are discarded",
           "- (MS-CXR phrases used as written)"),
    Choice("location_mappings", "list", "extended", ("list", "extended"), ("curate", "bench"),
           "--location-mappings",
           "App. I (c): areas outside the location list (e.g. 'retrocardiac region') are excluded", "-"),
    Choice("prompt_style", "paper", "cxrg", ("paper", "cxrg"), ("curate", "bench", "classify"),
           "[choices] prompt_style in cxrg.toml; cxrg.phrases.normalise(style=...)",
           "Sec. 3.2, App. D: '{location} {pathology}' with the 27 locations; Fig. 7: edema and cardiomegaly "
           "have exactly one location", "-"),
    Choice("negation", "sentence", "mention", ("sentence", "mention"), ("curate",), "--negation",
           "App. D: sentences naming the label that contain a negation ('no', 'without') or resolution "
           "('resolved') word are skipped; no uncertainty filter", "-"),
    Choice("loc_pairs", "phrase", "merged", ("phrase", "merged"), ("bench", "classify"), "--loc-pairs",
           "Sec. 4.1, App. I: 1,160 MS-CXR image-text pairs, 117 excluded, 1,043 scored: one per phrase",
           "data/ms_cxr.py: one sample per MS-CXR row group (image, phrase)"),
    Choice("error", "norm", "squared", ("norm", "squared"), ("classify",), "--error",
           "App. K, eq. 8: h ⊙ ||ε − ε_θ(x_t, c)|| (the norm over channels, not squared)", "-"),
    Choice("negatives_split", "required", "optional", ("required", "optional"), ("classify",),
           "--split-file / --split any",
           "App. K: the healthy class is sampled from the MIMIC-CXR test set labelled No Finding", "-"),
    Choice("g_normalisation", "density", "peak", ("density", "peak"), ("tune",), "--target-norm",
           "Sec. 3.3, eq. 3: G is a Gaussian distribution; App. H.2 Table 5 (alpha 0.1 > 0 > 1) only fits "
           "a G much smaller than the attention (density: sums to 1)", "- (no tuning code)"),
    Choice("timestep_spacing", "trailing", "leading", ("trailing", "leading"), ("bench", "tune", "classify"),
           "[ldm] timestep_spacing / -o timestep_spacing",
           "silent (Sec. 4.4: 100 steps, indices [30, 60] from noise to image)",
           "models_local/get_models.py: set_timesteps(num_timesteps, 'trailing'): t = 999, 989, ..., 9"),
    Choice("dicom_display", "mimic-jpg", "window", ("mimic-jpg", "window"), ("bench", "tune", "classify"),
           "--dicom-display",
           "silent; the LDM and all baselines were trained on MIMIC-CXR-JPG (Sec. 4.3, App. G)",
           "data/vindr_cxr.py reads PNG/JPG conversions"),
    Choice("vindr_candidates", "lut", "lung", ("lut", "lung"), ("bench",), "--vindr-candidates",
           "App. E, eq. 7: argmin over i = 1..N, N the Gaussians of the LUT", "-"),
    Choice("heatmap_upsampling", "nearest", "bilinear", ("nearest", "bilinear"), ("bench", "classify"),
           "[ldm] upsampling / -o upsampling",
           "Sec. 4.4: upsample to the shortest side and pad (mode not given)",
           "eval_ldm.py: F.interpolate(sim_map, size=shortest side, mode='nearest'), then NaN padding"),
    Choice("no_prediction", "both", "both", ("both",), ("bench",), "(reported both ways)",
           "App. F: MAIRA-2 gave no box for 129 of 443 VinDr pairs; Table 3 does not say how they count",
           "-"),
)
BY_NAME = {c.name: c for c in CHOICES}
NAMES = tuple(BY_NAME)


def choices_for(command: str) -> tuple[Choice, ...]:
    return tuple(c for c in CHOICES if command in c.commands)


def check_protocol(name: str) -> str:
    if name not in PROTOCOLS:
        raise UsageError(f"unknown protocol {name!r}", hint=f"choose {' or '.join(PROTOCOLS)}")
    return name


def check_value(name: str, value: Any, where: str = "") -> Any:
    choice = BY_NAME[name]
    if value not in choice.values:
        raise UsageError(f"{choice.setting}: {value!r} is not one of {', '.join(map(str, choice.values))}",
                         where=where or None)
    return value


@dataclass
class Resolved:
    """The protocol of one command and the value and source of each of its choices."""

    protocol: str
    protocol_source: str
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def record(self) -> dict[str, Any]:
        """What config.json keeps: the protocol and every resolved choice with its source."""
        return {"protocol": self.protocol, "protocol_source": self.protocol_source,
                "choices": {name: {"value": self.values[name], "source": self.sources[name]}
                            for name in self.values}}


def resolve(command: str, given: dict[str, Any] | None = None, protocol: str | None = None,
            cfg: Any = None) -> Resolved:
    """Every choice of `command`: `given` (explicit values, None = not given) > [choices] of the
    configuration files (`cfg`, a cxrg.config.Config) > the protocol's value."""
    given = given or {}
    source = "command line"
    if protocol is None and cfg is not None:
        protocol, source = cfg.resolve("protocol", None)
    if protocol is None:
        protocol, source = DEFAULT_PROTOCOL, "default"
    result = Resolved(check_protocol(str(protocol)), source)
    for choice in choices_for(command):
        value, where = given.get(choice.name), "command line"
        if value is None and cfg is not None:
            value, where = cfg.resolve(f"choices.{choice.name}", None)
        if value is None:
            value, where = choice.value(result.protocol), f"protocol {result.protocol}"
        result.values[choice.name] = check_value(choice.name, value, where if "/" in where else "")
        result.sources[choice.name] = where
    return result


def table_markdown() -> str:
    """The decisions table (docs/decisions.md holds a copy; a test keeps them equal)."""
    lines = ["| choice | paper | 2024 code | `--protocol paper` | `--protocol cxrg` | set alone | moves |",
             "|---|---|---|---|---|---|---|"]
    for c in CHOICES:
        lines.append(f"| {c.name} | {c.paper_says} | {c.code_2024} | `{c.paper}` | `{c.cxrg}` | "
                     f"`{c.setting}` | {', '.join(c.commands)} |")
    return "\n".join(lines) + "\n"
