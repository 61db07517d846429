"""Data builders shared by the tests (a plain module: `tests` itself is not importable as a package,
because some packages, e.g. radgraph, install a top-level `tests` package of their own)."""

from __future__ import annotations

MS_CXR_HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h",
                 "image_width", "image_height"]


# (dicom_id, category, phrase, boxes xywh, (height, width))
MS_CXR_SAMPLES = [
    ("d1", "Pneumonia", "right lower lobe opacity", [(20, 60, 30, 25)], (120, 100)),
    ("d1", "Pleural Effusion", "small left effusion", [(60, 80, 30, 30)], (120, 100)),
    ("d2", "Pneumonia", "bilateral opacities", [(10, 40, 25, 40), (60, 45, 25, 40)], (90, 110)),
    ("d3", "Pneumonia", "patchy opacity", [(30, 30, 40, 20)], (100, 100)),
    ("d4", "Pleural Effusion", "left pleural effusion", [(70, 70, 40, 35)], (130, 120)),
    ("d5", "Pneumothorax", "apical pneumothorax", [(5, 5, 40, 30)], (100, 130)),
    ("d6", "Pneumothorax", "right pneumothorax", [(0, 0, 50, 95)], (100, 90)),
    ("d7", "Pleural Effusion", "box partly outside", [(80, 90, 60, 40)], (110, 100)),
]


def mimic_path(dicom_id: str) -> str:
    return f"files/p10/p10000032/s50414267/{dicom_id}.jpg"


def run_cli(*args: str) -> int:
    """Run `cxrg ARGS...` in this process; its exit code (0 on success)."""
    from cxrg.cli.main import run

    try:
        run(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run_line(line: str) -> int:
    """Run a command line as typed (`cxrg ...`, split like a shell does); its exit code."""
    import shlex

    words = shlex.split(line)
    assert words[0] == "cxrg"
    return run_cli(*words[1:])


def read_csv(path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def make_distribution(site, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """A fake installed distribution under `site` (dist-info with cxrg.models entry points, and modules)."""
    import textwrap

    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[cxrg.models]\n{lines}\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
