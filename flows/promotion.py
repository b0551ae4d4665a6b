"""Flows ``promote`` and ``rollback``: the registry gate that never lets a worse model score the next shift.

Both models are evaluated on the same fixed evaluation set in one run, and detectors also on the frames operators
reviewed (``defect`` against ``false_alarm``) when there is at least one of each; every decision, promoted or
refused, is an MLflow run in experiment ``promotion`` with both metric sets, the reviewed set and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.results import PromotionResult, RollbackResult
from flows.scoring import DEFAULT_SEGMENTER
from flows.training import DataError, require_dir
from storage.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    ROLLED_BACK,
    ModelNotFound,
    alias_version,
    restore_previous,
    set_alias,
    version_tags,
)
from storage.reviewed_frames import labelled, latest_reviews
from storage.settings import Settings, load_settings
from storage.tracking import EXPERIMENT_PROMOTION, log_metrics, log_params, set_tags, tracked_run
from tasks.evaluate_models import evaluate_detector_task, evaluate_segmenter_task
from tasks.evaluate_reviewed import evaluate_reviewed_task
from tasks.promotion_rule import Decision, GateRule, decide

MODEL_KINDS = ("detector", "segmenter")
#: The detector's image AUROC on the frames operators reviewed (defect against false alarm).
REVIEWED_METRIC = "reviewed_image_auroc"


def gate_rule(settings: Settings, model: str, reviewed: bool = False) -> GateRule:
    """The promotion rule of a model kind, with tolerance and floors from the settings.

    With ``reviewed`` (the detector was scored on enough reviewed frames), the image AUROC on them is one more
    guard: a challenger may not do worse on the plant's own defects by more than the tolerance.
    """
    if model == "detector":
        return GateRule(
            primary="image_auroc",
            guards=("aupro", "pixel_auroc", *((REVIEWED_METRIC,) if reviewed else ())),
            floors={"image_auroc": settings.floor_image_auroc},
            tolerance=settings.guard_tolerance,
        )
    return GateRule(
        primary="miou",
        guards=("pixel_accuracy",),
        floors={"miou": settings.floor_miou},
        tolerance=settings.guard_tolerance,
    )


def evaluation_set(settings: Settings, model: str, eval_data: str | None) -> Path:
    """The fixed evaluation set of a model kind: the argument, else the setting; a clear error when neither."""
    if model == "detector":
        chosen = eval_data or (str(settings.eval_data) if settings.eval_data else None)
        if not chosen:
            raise DataError("no evaluation set: pass --eval-data DIR (MVTec AD layout) or set DEFECTFLOW_EVAL_DATA")
        return require_dir(chosen, ["test"], "evaluation")
    chosen = eval_data or (str(settings.seg_eval_data) if settings.seg_eval_data else None)
    if not chosen:
        raise DataError("no evaluation set: pass --eval-data DIR (images/, masks/) or set DEFECTFLOW_SEG_EVAL_DATA")
    return require_dir(chosen, ["images", "masks"], "evaluation")


def _evaluate(settings: Settings, model: str, version: str, data: Path) -> dict[str, Any]:
    uri = f"models:/{model}/{version}"
    task = evaluate_detector_task if model == "detector" else evaluate_segmenter_task
    return task(str(settings.home), str(data), uri)


def _check_kind(model: str) -> None:
    if model not in MODEL_KINDS:
        raise DataError(f"unknown model {model!r}; use one of {', '.join(MODEL_KINDS)}")


def reviewed_evaluation(settings: Settings, versions: list[str]) -> dict[str, Any]:
    """The image AUROC of detector ``versions`` on the reviewed frames, or a note on why there is none.

    Returns:
        ``defect``, ``false_alarm`` (frames reviewed), ``image_auroc`` (version -> AUROC; empty when the set is
        too small) and ``note`` (in words, for the run and the command line).
    """
    rows = labelled(latest_reviews(settings))
    frames = [(str(r.shift_id), str(r.image_id), bool(r.label)) for r in rows.itertuples(index=False)]
    defect = sum(label for _, _, label in frames)
    summary: dict[str, Any] = {"defect": defect, "false_alarm": len(frames) - defect, "image_auroc": {}}
    fixed_only = "promotion is judged on the fixed set only"
    if not defect or defect == len(frames):
        note = f"too few reviewed frames ({defect} defect, {len(frames) - defect} false alarm; it needs one of each)"
        return summary | {"note": f"{note}: {fixed_only}"}
    if alias_version(settings, "segmenter", CHAMPION) is None:
        return summary | {"note": f"no segmenter@{CHAMPION} to crop the reviewed frames: {fixed_only}"}
    uris = {version: f"models:/detector/{version}" for version in versions}
    scored = evaluate_reviewed_task(str(settings.home), frames, DEFAULT_SEGMENTER, uris)
    summary |= scored
    skipped = f"{scored['unreadable']} unreadable and {scored['no_component']} without a component skipped"
    if not scored["image_auroc"]:
        return summary | {"note": f"too few reviewed frames could be scored ({skipped}): {fixed_only}"}
    counts = f"{scored['defect']} defect, {scored['false_alarm']} false alarm"
    return summary | {
        "note": f"reviewed set: {counts} frames ({skipped}); {REVIEWED_METRIC} is a guard against the champion's"
    }


@dataclass
class _Judgement:
    """What the gate saw and said: the decision, the rule applied, both metric sets and the reviewed set."""

    decision: Decision
    rule: GateRule
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    reviewed: dict[str, Any] | None = None


def _judge(settings: Settings, model: str, challenger: str, champion: str | None, data: Path) -> _Judgement:
    """Evaluate both versions (the detector on the reviewed frames too) and decide."""
    challenger_metrics = _evaluate(settings, model, challenger, data)
    rule = gate_rule(settings, model)
    if champion == challenger:
        already = Decision(False, f"version {challenger} is already the champion")
        return _Judgement(already, rule, challenger_metrics, challenger_metrics)
    champion_metrics = _evaluate(settings, model, champion, data) if champion else None
    if version_tags(settings, model, challenger).get(ROLLED_BACK) == "true":
        reason = (
            f"version {challenger} was rolled back from champion; it is not promoted again. Train or retrain a new "
            f"challenger ('defectflow train {model}' or 'defectflow retrain')"
        )
        return _Judgement(Decision(False, reason), rule, challenger_metrics, champion_metrics)
    reviewed = reviewed_evaluation(settings, [v for v in (challenger, champion) if v]) if model == "detector" else None
    if reviewed and reviewed["image_auroc"]:
        rule = gate_rule(settings, model, reviewed=True)
        challenger_metrics[REVIEWED_METRIC] = reviewed["image_auroc"][challenger]
        if champion_metrics is not None:
            champion_metrics[REVIEWED_METRIC] = reviewed["image_auroc"][champion]
    decision = decide(rule, challenger_metrics, champion_metrics)
    return _Judgement(decision, rule, challenger_metrics, champion_metrics, reviewed)


@flow(name="promote", log_prints=True)
def promote(model: str = "detector", home: str | None = None, eval_data: str | None = None) -> PromotionResult:
    """Evaluate ``<model>@challenger`` against ``<model>@champion`` and promote it if it passes the gate.

    The detector is also judged on the reviewed frames when there are enough (:func:`reviewed_evaluation`).
    Promoting moves ``champion`` to the challenger and keeps the old champion as ``previous``.
    """
    logger = get_run_logger()
    _check_kind(model)
    settings = load_settings(home).ensure()
    challenger = alias_version(settings, model, CHALLENGER)
    if challenger is None:
        raise ModelNotFound(f"no {model}@{CHALLENGER} to promote; train one with 'defectflow train {model} --data DIR'")
    champion = alias_version(settings, model, CHAMPION)
    data = evaluation_set(settings, model, eval_data)
    judged = _judge(settings, model, challenger, champion, data)
    decision, rule, reviewed = judged.decision, judged.rule, judged.reviewed
    challenger_metrics, champion_metrics = judged.challenger, judged.champion
    keys = (rule.primary, *rule.guards)
    with tracked_run(settings, EXPERIMENT_PROMOTION, run_name=f"promote-{model}-v{challenger}") as run:
        log_params(
            {
                "model": model,
                "challenger_version": challenger,
                "champion_version": champion,
                "eval_data": str(data),
                "primary_metric": rule.primary,
                "guard_metrics": ",".join(rule.guards),
                "tolerance": rule.tolerance,
                "floors": rule.floors,
            }
        )
        if reviewed is not None:
            log_params({"reviewed_defect": reviewed["defect"], "reviewed_false_alarm": reviewed["false_alarm"]})
        log_metrics({f"challenger_{k}": challenger_metrics.get(k) for k in keys})
        if champion_metrics is not None:
            log_metrics({f"champion_{k}": champion_metrics.get(k) for k in keys})
        reviewed_tag = {"reviewed_set": reviewed["note"]} if reviewed else {}
        set_tags({"decision": "promoted" if decision.promote else "refused", "reason": decision.reason, **reviewed_tag})
        run_id = run.info.run_id

    if decision.promote:
        if champion:
            set_alias(settings, model, PREVIOUS, champion)
        set_alias(settings, model, CHAMPION, challenger)
    logger.info("%s v%s %s: %s", model, challenger, "promoted" if decision.promote else "refused", decision.reason)
    return PromotionResult(
        model=model,
        promoted=decision.promote,
        reason=decision.reason,
        challenger_version=challenger,
        champion_version=challenger if decision.promote else champion,
        previous_version=champion if decision.promote else alias_version(settings, model, PREVIOUS),
        challenger_metrics={k: challenger_metrics.get(k) for k in keys},
        champion_metrics={k: champion_metrics.get(k) for k in keys} if champion_metrics else None,
        reviewed=reviewed,
        mlflow_run_id=run_id,
    )


@flow(name="rollback", log_prints=True)
def rollback(model: str = "detector", home: str | None = None) -> RollbackResult:
    """Put ``<model>@previous`` back as champion; the demoted version is tagged ``rolled_back``."""
    _check_kind(model)
    settings = load_settings(home).ensure()
    previous, demoted = restore_previous(settings, model)
    with tracked_run(settings, EXPERIMENT_PROMOTION, run_name=f"rollback-{model}-v{demoted}") as _:
        log_params({"model": model, "demoted_version": demoted, "restored_version": previous})
        set_tags({"decision": "rollback", "reason": f"v{previous} restored over v{demoted}"})
    return RollbackResult(model=model, champion_version=previous, demoted_version=demoted)
