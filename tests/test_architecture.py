"""The import picture of docs/architecture.md, checked: no arrow points up a layer, no CXRG_* read outside
the settings module, no command imports another command's module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cxrg"
LAYERS = {
    0: {"errors", "config", "protocol", "vocab", "geometry", "images", "runs", "demo", "progress",
        "__init__"},
    1: {"anatomy", "ldm", "curation", "registry", "phrases"},
    2: {"models", "bench", "tuning", "classify", "report", "study", "organism", "grounding", "loading",
        "testing", "export"},
    3: {"api", "cli", "__main__"},
}
LAYER = {name: layer for layer, names in LAYERS.items() for name in names}
ALLOWED = {("ldm/diagnose.py", "bench"),  # a diagnostic that scores layers with the bench metrics
           ("__init__.py", "api"),  # the package re-exports the Python API lazily (on first use)
           ("bench/__init__.py", "api")}  # `cxrg.bench` names both the package and api.bench: calls forward


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxrg."):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("cxrg.")]
    return found


def test_no_import_points_up_a_layer():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        source = relative.split("/")[0].removesuffix(".py")
        assert source in LAYER, f"{relative}: add its package to docs/architecture.md and LAYERS"
        for module in _imports(path):
            target = module.split(".")[1]
            if LAYER.get(target, 0) > LAYER[source] and (relative, target) not in ALLOWED:
                upward.append(f"{relative} imports {module}")
    assert upward == []


def test_no_two_modules_import_each_other():
    """Import circles (even through imports inside functions) tie two modules into one; a package's
    __init__ re-exporting its own modules is not one."""
    imports = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        name = ".".join(("cxrg", *path.relative_to(PACKAGE).with_suffix("").parts))
        imports[name] = set(_imports(path))
    circles = sorted((a, b) for a in imports for b in imports[a] if a < b and a in imports.get(b, ()))
    assert circles == []


def test_commands_do_not_import_each_other():
    for path in (PACKAGE / "cli").glob("*.py"):
        for module in _imports(path):
            assert not re.match(r"cxrg\.cli\.\w+", module), f"{path.name} imports {module}"


def test_cxrg_variables_are_read_only_in_the_settings_module():
    readers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if path.name == "config.py" and path.parent == PACKAGE:
            continue
        if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']CXRG_", text) or re.search(r"getenv\([\"']CXRG_", text):
            readers.append(path.relative_to(PACKAGE).as_posix())
    assert readers == []


def test_command_modules_stay_thin():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 110} == {}
