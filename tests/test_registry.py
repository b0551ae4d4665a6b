"""The registry tells an absent model from an unreadable registry (issue #12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.registry import CHAMPION, RegistryUnavailable, alias_version
from storage.settings import load_settings


def test_an_absent_model_is_none_and_a_damaged_registry_is_an_error_that_says_so(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "fresh").ensure()
    assert alias_version(settings, "detector", CHAMPION) is None  # nothing registered yet: absent, not an error

    damaged = load_settings(tmp_path / "damaged").ensure()
    database = Path(damaged.tracking_uri.removeprefix("sqlite:///"))
    database.write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(RegistryUnavailable, match="could not read detector@champion from the MLflow registry"):
        alias_version(damaged, "detector", CHAMPION)
