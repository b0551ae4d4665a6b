"""Settings a user can get wrong end the command with exit code 2 and one line that says what to fix.

The command runs as a real subprocess (``python -m flows.cli``), because some of these settings are read while
modules are imported, before any error handling of the command line could run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(arguments: list[str], env: dict[str, str] | None = None, prefix: list[str] | None = None):
    environment = {**os.environ, **(env or {})}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    command = [*(prefix or []), sys.executable, "-m", "flows.cli", *arguments]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=180)


def _assert_one_line_exit_2(result: subprocess.CompletedProcess, message: str) -> None:
    everything = result.stdout + result.stderr
    assert result.returncode == 2, everything
    assert "Traceback" not in everything, everything
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], everything


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "frame.png").write_bytes(b"not looked at")
    return folder


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        ("ingest", {"DEFECTFLOW_MAX_PIXELS": "abc"}, "DEFECTFLOW_MAX_PIXELS='abc' is not a whole number"),
        ("ingest", {"DEFECTFLOW_WORKERS": "0"}, "DEFECTFLOW_WORKERS='0' must be positive"),
        ("score", {"DEFECTFLOW_MAX_PIXELS": "abc"}, "DEFECTFLOW_MAX_PIXELS='abc' is not a whole number"),
        ("verify", {"DEFECTFLOW_WORKERS": "-3"}, "DEFECTFLOW_WORKERS='-3' must be positive"),
        ("score", {"DEFECTFLOW_TORCH_THREADS": "two"}, "DEFECTFLOW_TORCH_THREADS='two' is not a whole number"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    command: str, env: dict[str, str], message: str, source: Path, tmp_path: Path
) -> None:
    arguments = {"ingest": ["ingest", str(source)], "score": ["score"], "verify": ["verify"]}[command]
    result = _cli([*arguments, "--shift", "S1", "--home", str(tmp_path / "home")], env)
    _assert_one_line_exit_2(result, message)


def test_a_workspace_that_is_a_file_exits_2_and_home_overrides_it(source: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "home.txt"
    a_file.write_text("not a folder")
    result = _cli(["ingest", str(source), "--shift", "S1"], {"DEFECTFLOW_HOME": str(a_file)})
    _assert_one_line_exit_2(result, "is not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    home = ["--home", str(tmp_path / "home")]
    result = _cli(["ingest", str(empty), "--shift", "S1", *home], {"DEFECTFLOW_HOME": str(a_file)})
    _assert_one_line_exit_2(result, "holds no files")  # --home wins: the next problem is the source's


def _read_only_prefix(home: Path) -> list[str] | None:
    """How to run a command that sees ``home`` read-only: permissions, or (as root) a read-only bind mount."""
    home.chmod(0o555)
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    folder = shlex.quote(str(home))
    mount = f'mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && exec "$@"'
    prefix = [unshare, "-m", "sh", "-c", mount, "sh"] if unshare else None
    probe = prefix and subprocess.run([*prefix, "touch", str(home / "probe")], capture_output=True, check=False)
    return prefix if probe and probe.returncode != 0 and not (home / "probe").exists() else None


def test_a_read_only_workspace_exits_2_with_one_line(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    prefix = _read_only_prefix(home)
    if prefix is None:
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only here")
    result = _cli(["ingest", str(source), "--shift", "S1", "--home", str(home)], prefix=prefix)
    home.chmod(0o755)
    _assert_one_line_exit_2(result, "is not writable")
