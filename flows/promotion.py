"""Flows ``promote`` and ``rollback``: the registry gate that never lets a worse model score the next shift.

Both models are evaluated on the same fixed evaluation set in one run; every decision, promoted or refused, is an
MLflow run in experiment ``promotion`` with both metric sets and the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

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
from storage.settings import Settings, load_settings
from storage.tracking import EXPERIMENT_PROMOTION, log_metrics, log_params, set_tags, tracked_run
from tasks.evaluate_models import evaluate_detector_task, evaluate_segmenter_task
from tasks.promotion_rule import Decision, GateRule, decide

MODEL_KINDS = ("detector", "segmenter")


#: Version tag that rollback sets on the demoted champion; promote refuses such a challenger.


def gate_rule(settings: Settings, model: str) -> GateRule:
    """The promotion rule of a model kind, with tolerance and floors from the settings."""
    if model == "detector":
        return GateRule(
            primary="image_auroc",
            guards=("aupro", "pixel_auroc"),
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


@flow(name="promote", log_prints=True)
def promote(model: str = "detector", home: str | None = None, eval_data: str | None = None) -> dict[str, Any]:
    """Evaluate ``<model>@challenger`` against ``<model>@champion`` and promote it if it passes the gate.

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
    rule = gate_rule(settings, model)

    challenger_metrics = _evaluate(settings, model, challenger, data)
    if version_tags(settings, model, challenger).get(ROLLED_BACK) == "true":
        champion_metrics = _evaluate(settings, model, champion, data) if champion else None
        decision = Decision(
            False,
            f"version {challenger} was rolled back from champion; it is not promoted again. Train or retrain a new "
            f"challenger ('defectflow train {model}' or 'defectflow retrain')",
        )
    elif champion == challenger:
        champion_metrics: dict[str, Any] | None = challenger_metrics
        decision = Decision(False, f"version {challenger} is already the champion")
    else:
        champion_metrics = _evaluate(settings, model, champion, data) if champion else None
        decision = decide(rule, challenger_metrics, champion_metrics)

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
        keys = (rule.primary, *rule.guards)
        log_metrics({f"challenger_{k}": challenger_metrics.get(k) for k in keys})
        if champion_metrics is not None:
            log_metrics({f"champion_{k}": champion_metrics.get(k) for k in keys})
        set_tags({"decision": "promoted" if decision.promote else "refused", "reason": decision.reason})
        run_id = run.info.run_id

    if decision.promote:
        if champion:
            set_alias(settings, model, PREVIOUS, champion)
        set_alias(settings, model, CHAMPION, challenger)
    logger.info("%s v%s %s: %s", model, challenger, "promoted" if decision.promote else "refused", decision.reason)
    keys = (rule.primary, *rule.guards)
    return {
        "model": model,
        "promoted": decision.promote,
        "reason": decision.reason,
        "challenger_version": challenger,
        "champion_version": challenger if decision.promote else champion,
        "previous_version": champion if decision.promote else alias_version(settings, model, PREVIOUS),
        "challenger_metrics": {k: challenger_metrics.get(k) for k in keys},
        "champion_metrics": {k: champion_metrics.get(k) for k in keys} if champion_metrics else None,
        "mlflow_run_id": run_id,
    }


@flow(name="rollback", log_prints=True)
def rollback(model: str = "detector", home: str | None = None) -> dict[str, Any]:
    """Put ``<model>@previous`` back as champion; the demoted version is tagged ``rolled_back``."""
    _check_kind(model)
    settings = load_settings(home).ensure()
    previous, demoted = restore_previous(settings, model)
    with tracked_run(settings, EXPERIMENT_PROMOTION, run_name=f"rollback-{model}-v{demoted}") as _:
        log_params({"model": model, "demoted_version": demoted, "restored_version": previous})
        set_tags({"decision": "rollback", "reason": f"v{previous} restored over v{demoted}"})
    return {"model": model, "champion_version": previous, "demoted_version": demoted}
