"""Chest phantoms with findings drawn per pathology at (jittered) atlas places, and their captions.

A phantom is a grey chest: a bright body ellipse, two dark lung fields with faint ribs, a bright heart on
the image's right-of-centre (the patient's left), noise. A finding is drawn at each Gaussian of the
location its caption names (the atlas LUT, in 512-pixel units, scaled to the phantom size), its centre
moved away from the atlas centre by up to `spread` of the Gaussian's sigma (floor 16 px at 512), so a
model must read the image, not the word alone, to find it. Pathologies are drawn differently:

    Lung Opacity   soft bright Gaussian            Pneumonia      bright Gaussian with patchy texture
    Consolidation  dense flat-topped bright patch  Atelectasis    thin bright horizontal band
    Pleural Effusion  bright patch, flat top edge  Pneumothorax   dark patch with a bright rim
    Edema          bright Gaussian of small spots  Cardiomegaly   enlarged heart (caption "cardiomegaly")

Captions are in the prompt grammar of cxrg.vocab ("left lower pneumonia", "left apical and right lower
lung opacity") and canonical (`canonical_locations`); healthy phantoms have no finding and the healthy
prompt of `cxrg classify`.
Boxes (x, y, w, h in pixels) are centre +- 2 sigma of each drawn finding, clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cxrg.anatomy.lut import Lut
from cxrg.vocab import Prompt

HEALTHY_PROMPT = "No acute cardiopulmonary process"
FINDINGS = ("Lung Opacity", "Pneumonia", "Consolidation", "Atelectasis", "Pleural Effusion", "Pneumothorax",
            "Edema")
ZONES = ("apical", "upper", "middle", "lower", "costophrenic", "pleural", "base", "")
ONE_SIDED = tuple(f"{side} {zone}".strip() for side in ("left", "right") for zone in ZONES)
BILATERAL = ("bilateral upper", "bilateral middle", "bilateral lower", "bibasilar")
FLOOR = 16.0  # px at 512: the least jitter / blob sigma, so small atlas regions still move and show
LUT_SIZE = 512


@dataclass
class Finding:
    cx: float
    cy: float
    sx: float
    sy: float  # all in pixels of the phantom


@dataclass
class Phantom:
    image: np.ndarray  # float32 size x size in [0, 1]
    prompt: str
    pathology: str | None  # None: healthy
    locations: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """x, y, w, h of each finding: centre +- 2 sigma, clipped to the image."""
        size = self.image.shape[0]
        out = []
        for f in self.findings:
            x0, y0 = max(0.0, f.cx - 2 * f.sx), max(0.0, f.cy - 2 * f.sy)
            x1, y1 = min(float(size), f.cx + 2 * f.sx), min(float(size), f.cy + 2 * f.sy)
            out.append((round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)))
        return out


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    return yy, xx


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    from scipy import ndimage

    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    return noise / (noise.std() + 1e-8)


def chest(rng: np.random.Generator, size: int, heart_scale: float = 1.0) -> np.ndarray:
    """The healthy background: body, lungs with ribs, heart, smooth texture and noise."""
    yy, xx = _grid(size)
    u, v = xx / size, yy / size
    shift_x, shift_y = rng.uniform(-0.015, 0.015, 2)
    body = 1 / (1 + np.exp(-(1 - ((u - 0.5) / 0.46) ** 2 - ((v - 0.55) / 0.55) ** 2) * 12))
    image = 0.08 + 0.55 * body
    for cx in (0.3, 0.7):
        lung = np.exp(-((((u - cx - shift_x) / 0.15) ** 2 + ((v - 0.46 - shift_y) / 0.3) ** 2) ** 2))
        image -= 0.38 * lung
        ribs = 0.5 + 0.5 * np.cos(2 * np.pi * (v - 0.3 * np.abs(u - 0.5)) * 9 + rng.uniform(0, 6.28))
        image += 0.06 * lung * ribs
    hx, hy = 0.55 + rng.uniform(-0.01, 0.01), 0.58
    heart = np.exp(-((((u - hx) / (0.11 * heart_scale)) ** 2 + ((v - hy) / (0.1 * heart_scale)) ** 2) ** 2))
    image += 0.3 * heart
    image += 0.03 * _smooth_noise(rng, size, size / 40) + 0.015 * rng.standard_normal((size, size))
    return image


def draw_finding(image: np.ndarray, pathology: str, f: Finding, rng: np.random.Generator,
                 strength: float = 1.0) -> None:
    """Add one finding of `pathology` in place; `strength` scales its contrast (fainter below 1)."""
    if strength != 1.0:
        finding = np.zeros_like(image)
        draw_finding(finding, pathology, f, rng)
        image += strength * finding
        return
    size = image.shape[0]
    yy, xx = _grid(size)
    r2 = ((xx - f.cx) / f.sx) ** 2 + ((yy - f.cy) / f.sy) ** 2
    gauss = np.exp(-r2 / 2)
    flat = np.exp(-(r2 / 2.5) ** 3)
    if pathology == "Lung Opacity":
        image += 0.35 * gauss
    elif pathology == "Pneumonia":
        patches = np.clip(_smooth_noise(rng, size, max(1.0, size / 64)) * 0.6 + 0.6, 0, 1.2)
        image += 0.45 * gauss * patches
    elif pathology == "Consolidation":
        image += 0.42 * flat
    elif pathology == "Atelectasis":
        band = np.exp(-(((xx - f.cx) / (1.6 * f.sx)) ** 2 + ((yy - f.cy) / (0.4 * f.sy)) ** 2) / 2)
        image += 0.45 * band
    elif pathology == "Pleural Effusion":
        top = 1 / (1 + np.exp(-(yy - (f.cy - 1.2 * f.sy)) / max(0.6, f.sy / 6)))
        side = np.exp(-(((xx - f.cx) / (1.3 * f.sx)) ** 2 / 2) ** 2)
        bottom = np.exp(-np.clip(yy - (f.cy + 1.5 * f.sy), 0, None) ** 2 / (2 * f.sy ** 2))
        image += 0.4 * top * side * bottom
    elif pathology == "Pneumothorax":
        rim = np.exp(-((np.sqrt(r2) - 1.6) / 0.18) ** 2)
        image -= 0.22 * flat
        image += 0.25 * rim
    elif pathology == "Edema":
        dots = (rng.random((size, size)) < 0.08).astype(np.float64)
        from scipy import ndimage

        dots = ndimage.gaussian_filter(dots, max(0.7, size / 180)) * 6
        image += 0.4 * gauss * np.clip(dots, 0, 1.5)
    else:
        raise ValueError(f"no drawing for {pathology!r}")


def place(lut: Lut, location: str, size: int, rng: np.random.Generator, spread: float,
          off_atlas: tuple[float, float] | None = None) -> list[Finding]:
    """One finding per Gaussian of `location`, jittered (uniform in +-spread sigma, or at a distance in
    `off_atlas` = (low, high) sigma in a random direction), blob sigma from the atlas sigma."""
    scale = size / LUT_SIZE
    out = []
    for g in lut[location]:
        jx, jy = max(g.sigma_x, FLOOR), max(g.sigma_y, FLOOR)
        if off_atlas is None:
            dx, dy = rng.uniform(-spread, spread, 2)
        else:
            angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(*off_atlas)
            dx, dy = radius * np.cos(angle), radius * np.sin(angle)
        sx = float(np.clip(g.sigma_x * rng.uniform(0.6, 0.9), FLOOR, 36.0))
        sy = float(np.clip(g.sigma_y * rng.uniform(0.8, 1.1), FLOOR, 28.0))
        out.append(Finding((g.mu_x + dx * jx) * scale, (g.mu_y + dy * jy) * scale, sx * scale, sy * scale))
    return out


def make_phantom(lut: Lut, size: int, rng: np.random.Generator, pathology: str | None,
                 locations: tuple[str, ...] = (), spread: float = 1.0,
                 off_atlas: tuple[float, float] | None = None, canonical: bool = True,
                 strength: float = 1.0) -> Phantom:
    """A phantom with `pathology` at `locations` (None: healthy; Cardiomegaly: enlarged heart); with
    `canonical`, drawn and captioned at the canonical prompt's locations (cxrg 0.2's organism was trained
    on the locations as drawn, `canonical=False`); `strength` scales the findings' contrast."""
    if pathology is None:
        return Phantom(_finish(chest(rng, size)), HEALTHY_PROMPT, None, ())
    if pathology == "Cardiomegaly":
        return Phantom(_finish(chest(rng, size, heart_scale=1.45)), Prompt((), "Cardiomegaly").format(),
                       pathology, ())
    if canonical:
        locations = canonical_locations(tuple(locations), pathology)
    image = chest(rng, size)
    findings = [f for location in locations for f in place(lut, location, size, rng, spread, off_atlas)]
    for f in findings:
        draw_finding(image, pathology, f, rng, strength)
    return Phantom(_finish(image), Prompt(tuple(locations), pathology).format(), pathology, tuple(locations),
                   findings)


def canonical_locations(locations: tuple[str, ...], pathology: str) -> tuple[str, ...]:
    """The locations of the canonical prompt (cxrg.vocab.canonical, what cxrg.phrases.normalise reads), so
    every caption is canonical and every model reads the same prompt: "pleural" goes only with pleural
    findings ("left pleural atelectasis" is drawn and captioned "left atelectasis"), and "left base and
    right base" is "bibasilar". The finding is drawn where the canonical caption says."""
    from cxrg.vocab import canonical

    return canonical(Prompt(tuple(locations), pathology)).locations


def _finish(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 1).astype(np.float32)


def _distinct(lut: Lut, a: str, b: str) -> bool:
    ga, gb = lut[a][0], lut[b][0]
    return abs(ga.mu_x - gb.mu_x) > 60 or abs(ga.mu_y - gb.mu_y) > 60


def random_phantom(lut: Lut, size: int, rng: np.random.Generator, spread: float = 1.0,
                   canonical: bool = True) -> Phantom:
    """The training distribution: 8 % healthy, 4 % cardiomegaly, 12 % bilateral, 20 % two findings,
    the rest one finding at a one-sided location; pathologies uniform over FINDINGS."""
    kind = rng.random()
    if kind < 0.08:
        return make_phantom(lut, size, rng, None)
    if kind < 0.12:
        return make_phantom(lut, size, rng, "Cardiomegaly")
    pathology = FINDINGS[int(rng.integers(len(FINDINGS)))]
    if kind < 0.24:
        locations: tuple[str, ...] = (BILATERAL[int(rng.integers(len(BILATERAL)))],)
    elif kind < 0.44:
        locations = two_locations(lut, rng)
    else:
        locations = (ONE_SIDED[int(rng.integers(len(ONE_SIDED)))],)
    return make_phantom(lut, size, rng, pathology, locations, spread, canonical=canonical)


def two_locations(lut: Lut, rng: np.random.Generator) -> tuple[str, str]:
    zoned = [loc for loc in ONE_SIDED if " " in loc]
    while True:
        a, b = (zoned[int(i)] for i in rng.choice(len(zoned), 2, replace=False))
        if _distinct(lut, a, b):
            return a, b
