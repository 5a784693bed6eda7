"""The package skeleton: registry, errors, atomic writes, CLI error handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dimcollapse.cli.main import run
from dimcollapse.errors import ConfigError, DimCollapseError, InputError
from dimcollapse.registry import _REGISTRY, build, names, register
from dimcollapse.utils.atomic import atomic_write_json, ensure_writable_dir


def test_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ConfigError, match="backbone"):
        names("bogus")


def test_unknown_name_lists_valid_names() -> None:
    @register("objective", "_test_dummy")
    class Dummy:
        def __init__(self, a: int = 1) -> None:
            self.a = a

    with pytest.raises(ConfigError, match="_test_dummy"):
        build("objective", "no_such_objective")
    assert build("objective", "_test_dummy", a=3).a == 3
    with pytest.raises(ConfigError, match="Valid options: a"):
        build("objective", "_test_dummy", b=3)
    _REGISTRY["objective"].pop("_test_dummy")


def test_atomic_json_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1.0, "nan": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1.0, "nan": None}
    # a failing writer leaves the previous content and no temp file behind
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text())["a"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_files_get_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_uncreatable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create output folder"):
        ensure_writable_dir(blocker / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_dir(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    with pytest.raises(InputError, match="not writable"):
        ensure_writable_dir(d)


def test_error_hierarchy() -> None:
    assert issubclass(InputError, DimCollapseError)
    assert issubclass(ConfigError, DimCollapseError)


def test_cli_unknown_command_exits_nonzero(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["no-such-command"]) != 0


def test_cli_info_runs() -> None:
    assert run(["info"]) == 0


def test_console_script_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dimcollapse", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
