"""The requirement list of one plugin's own environment, for noxfile.py and for building one by hand.

cxrg pins torch exactly (the CPU build on the local disk) and the BioViL plugin needs another torch
(torchvision is published for one torch release only), so pip cannot resolve cxrg and that plugin together.
The environment is therefore built in two steps: this merged list (cxrg's runtime dependencies, with the
plugin's own pins taking precedence for any package both name), then cxrg and the plugin with --no-deps.

    python3.11 plugins/env_requirements.py plugins/cxrg-biovil > requirements.txt   # one per line

Standard library only, so any Python 3.11 runs it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _project(pyproject: Path) -> dict:
    with pyproject.open("rb") as handle:
        return tomllib.load(handle)["project"]


def _name(requirement: str) -> str:
    """The distribution name a requirement starts with, normalised (PEP 503)."""
    match = NAME.match(requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group()).lower()


def environment_requirements(plugin_dir: Path, extras: tuple[str, ...] = ("test",)) -> list[str]:
    """cxrg's dependencies minus those the plugin pins itself, plus the plugin's (and its extras'),
    without cxrg itself (installed --no-deps afterwards)."""
    plugin = _project(Path(plugin_dir) / "pyproject.toml")
    own = list(plugin.get("dependencies", []))
    for extra in extras:
        own += plugin.get("optional-dependencies", {}).get(extra, [])
    own = [r for r in own if _name(r) != "cxrg"]
    pinned = {_name(r) for r in own}
    core = [r for r in _project(REPO / "pyproject.toml")["dependencies"] if _name(r) not in pinned]
    return core + own


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "pyproject.toml").is_file():
        sys.exit("usage: python plugins/env_requirements.py plugins/<plugin folder>")
    print("\n".join(environment_requirements(Path(sys.argv[1]))))
