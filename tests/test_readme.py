"""The README's "three ways in" run as written: its python blocks in order, then its dimcollapse commands.

(The 10-line API tour further down is a cheat sheet with free variables such as Z and is not run.)
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from dimcollapse.cli.main import run

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.index("## Your own model")
    section = text[start : text.index("\n## ", start + 3)]
    return re.findall(r"```(python|bash)\n(.*?)```", section, re.S)


def test_readme_three_ways_in_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = blocks()
    assert [lang for lang, _ in found] == ["python", "python", "python", "bash"]
    namespace: dict[str, object] = {"__name__": "readme"}
    for lang, code in found:
        if lang == "python":
            exec(compile(code, str(README), "exec"), namespace)
            continue
        for line in code.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "dimcollapse"
            assert run(args[1:]) == 0, line
    out = namespace["out"]
    assert isinstance(out, dict) and 1.0 <= float(out["erank"]) <= 16.0
    assert json.loads(Path("runs/readme/monitor.json").read_text())["history"]
    full = json.loads(Path("runs/encoder/metrics.json").read_text())
    collapsed = json.loads(Path("runs/collapsed/metrics.json").read_text())
    assert collapsed["erank"] < full["erank"] and collapsed["layers"]["net.3"]["erank"] < 2.0 + 1e-6
    assert Path("runs/compare/index.html").is_file()
