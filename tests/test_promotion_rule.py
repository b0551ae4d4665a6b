"""The promotion gate's rule, case by case."""

from __future__ import annotations

import math

from tasks.promotion_rule import GateRule, decide

RULE = GateRule(primary="image_auroc", guards=("aupro", "pixel_auroc"), floors={"image_auroc": 0.9}, tolerance=0.02)
CHAMPION = {"image_auroc": 0.95, "aupro": 0.80, "pixel_auroc": 0.96}


def test_better_challenger_is_promoted() -> None:
    decision = decide(RULE, {"image_auroc": 0.97, "aupro": 0.81, "pixel_auroc": 0.96}, CHAMPION)
    assert decision.promote, decision.reason


def test_equal_primary_is_enough() -> None:
    assert decide(RULE, dict(CHAMPION), CHAMPION).promote


def test_worse_primary_is_refused() -> None:
    decision = decide(RULE, {"image_auroc": 0.94, "aupro": 0.9, "pixel_auroc": 0.99}, CHAMPION)
    assert not decision.promote
    assert "image_auroc" in decision.reason


def test_guard_drop_beyond_tolerance_is_refused() -> None:
    decision = decide(RULE, {"image_auroc": 0.99, "aupro": 0.77, "pixel_auroc": 0.96}, CHAMPION)
    assert not decision.promote
    assert "aupro" in decision.reason


def test_guard_drop_within_tolerance_is_accepted() -> None:
    assert decide(RULE, {"image_auroc": 0.99, "aupro": 0.785, "pixel_auroc": 0.945}, CHAMPION).promote


def test_first_champion_must_meet_floors() -> None:
    assert decide(RULE, {"image_auroc": 0.91}, None).promote
    refused = decide(RULE, {"image_auroc": 0.85}, None)
    assert not refused.promote and "floor" in refused.reason


def test_missing_or_nan_metrics_never_promote() -> None:
    assert not decide(RULE, {"image_auroc": math.nan, "aupro": 0.9, "pixel_auroc": 0.99}, CHAMPION).promote
    assert not decide(RULE, {"aupro": 0.9}, CHAMPION).promote
    assert not decide(RULE, {"image_auroc": math.nan}, None).promote
