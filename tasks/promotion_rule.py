"""The promotion gate: when a challenger may replace the champion. A pure function, so the rule is testable alone."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateRule:
    """What a model kind is judged on.

    Attributes:
        primary: Metric the challenger must match or beat (higher is better).
        guards: Metrics that may not fall by more than ``tolerance`` against the champion.
        floors: Minimum values a challenger needs when there is no champion yet.
        tolerance: Largest allowed drop of a guard metric (absolute).
    """

    primary: str
    guards: tuple[str, ...]
    floors: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.02


@dataclass(frozen=True)
class Decision:
    """Outcome of the gate: promote or not, and the reason in words."""

    promote: bool
    reason: str


def decide(rule: GateRule, challenger: dict[str, float], champion: dict[str, float] | None) -> Decision:
    """Apply ``rule`` to the metrics of a challenger and, if there is one, of the champion.

    A missing or NaN metric counts as failing, so a broken evaluation never promotes a model.
    """

    def value(metrics: dict[str, float], key: str) -> float | None:
        raw = metrics.get(key)
        if raw is None or raw != raw:
            return None
        return float(raw)

    if champion is None:
        shortfalls = []
        for key, floor in rule.floors.items():
            got = value(challenger, key)
            if got is None or got < floor:
                shortfalls.append(f"{key} {got if got is not None else 'missing'} < floor {floor}")
        if shortfalls:
            return Decision(False, "no champion yet and the challenger misses the floors: " + "; ".join(shortfalls))
        floors = ", ".join(f"{k} {value(challenger, k):.4f} >= {v}" for k, v in rule.floors.items())
        return Decision(True, f"no champion yet; challenger meets the floors ({floors})")

    new, old = value(challenger, rule.primary), value(champion, rule.primary)
    if new is None:
        return Decision(False, f"challenger has no {rule.primary}")
    if old is not None and new < old:
        return Decision(False, f"{rule.primary} {new:.4f} is below the champion's {old:.4f}")
    drops = []
    for key in rule.guards:
        guard_new, guard_old = value(challenger, key), value(champion, key)
        if guard_old is None:
            continue
        if guard_new is None or guard_new < guard_old - rule.tolerance:
            drops.append(f"{key} fell from {guard_old:.4f} to {guard_new if guard_new is not None else 'missing'}")
    if drops:
        return Decision(False, f"guard metric fell by more than {rule.tolerance}: " + "; ".join(drops))
    old_text = f"{old:.4f}" if old is not None else "n/a"
    return Decision(True, f"{rule.primary} {new:.4f} >= champion's {old_text}; guards within {rule.tolerance}")
