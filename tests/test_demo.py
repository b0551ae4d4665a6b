"""``make demo`` writes where every other command writes: ``--home``, else ``DEFECTFLOW_HOME``."""

from __future__ import annotations

from pathlib import Path

from flows.demo import _home


def test_demo_honours_home_option_then_setting_then_its_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEFECTFLOW_HOME", raising=False)
    assert _home(None) == tmp_path / "defectflow-demo"
    monkeypatch.setenv("DEFECTFLOW_HOME", str(tmp_path / "from-setting"))
    assert _home(None) == tmp_path / "from-setting"
    assert _home(Path("from-option")) == tmp_path / "from-option"
