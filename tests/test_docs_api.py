"""docs/api.md runs: its python blocks in order in one namespace, its bash blocks as cxrg commands."""

from __future__ import annotations

import re
from pathlib import Path

from cxrg_test_support import run_line

PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```(python|bash)\n(.*?)^```", text, flags=re.M | re.S)


def test_every_block_of_the_api_page_runs(tmp_path, monkeypatch, capsys):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    found = blocks(PAGE.read_text(encoding="utf-8"))
    assert [kind for kind, _ in found].count("python") >= 6 and ("bash", "cxrg weights organism organism "
                                                                  "--sets phantoms\n") in found
    namespace: dict = {"__name__": "docs_api"}
    for kind, code in found:
        if kind == "bash":
            for line in code.strip().splitlines():
                assert run_line(line) == 0, line
        else:
            exec(compile(code, f"{PAGE}:block", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "left pleural pleural effusion" in out  # the prompt the prior was given
    assert "image not found (missing.png)" in out
    assert (tmp_path / "grounding" / "RG1_UNCR.prior.overlay.png").is_file()
    assert (tmp_path / "runs" / "phantoms" / "report.html").is_file()
