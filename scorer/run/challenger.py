"""The shadow run's challenger (``SCORER_SHADOW_ALIAS`` or ``SCORER_SHADOW_VERSION``): its run id
and settings, which ``scorer.run.shadow`` scores after the champion publishes, and ``check``,
which prepares it as that run would, up front and writing nothing."""

from __future__ import annotations

import gc

import structlog

from scorer.config import RunSettings
from scorer.errors import InternalError, PermanentError
from scorer.failures import classify
from scorer.model import registry
from scorer.postgres import db
from scorer.run.prepare import Timer, prepare

SUFFIX = "-shadow"
_MAX_RUN_ID = 128


def shadow_run_id(run_id: str) -> str:
    """The shadow run's id: the champion's with ``-shadow`` (stable across retries)."""
    return run_id[: _MAX_RUN_ID - len(SUFFIX)] + SUFFIX


def settings_for(settings: RunSettings, snapshot: str) -> RunSettings:
    """The shadow run's settings: the champion's, scoring the challenger over ``snapshot`` (the
    champion's), with no promotion gate, no snapshot age, no metrics, and the quality gate
    overridden (``scorer.run.shadow``)."""
    return settings.for_shadow(
        settings.run_id,
        run_id=shadow_run_id(settings.run_id),
        snapshot=snapshot,
        model_alias=settings.shadow_alias,
        model_version=settings.shadow_version,
        model_stage=None,
        require_alias=None,
        require_stage=None,
        shadow_alias=None,
        shadow_version=None,
        max_snapshot_age=None,
        quality_override=f"shadow of run {settings.run_id}",
        pushgateway_url=None,
    )


def setting(settings: RunSettings) -> str:
    """The setting that names the challenger, as set: ``SCORER_SHADOW_ALIAS=challenger``."""
    if settings.shadow_alias is not None:
        return f"SCORER_SHADOW_ALIAS={settings.shadow_alias}"
    return f"SCORER_SHADOW_VERSION={settings.shadow_version}"


def check(
    settings: RunSettings, champion: registry.ResolvedModel, snapshot: str, writer: db.Connection
) -> dict[str, object]:
    """Resolve and load the challenger and check the feature relation for it over the
    ``champion``'s ``snapshot``, as its shadow run would; write nothing. Returns what
    ``check``'s summary line says of it. A challenger that cannot score is refused (exit 2),
    naming the setting: at run time it would fail its shadow run only, after the champion
    published."""
    challenger = settings_for(settings, snapshot)
    timer = Timer()
    gc.unfreeze()  # the champion's model, frozen by its prepare, can go before the challenger's
    gc.collect()
    structlog.contextvars.bind_contextvars(run_id=challenger.run_id)
    try:
        prepared = prepare(challenger, writer, timer)
    except BaseException as exc:
        failure = classify(exc)
        if not isinstance(failure, PermanentError) or isinstance(failure, InternalError):
            raise  # a retry may cure it, or a bug: as any check's failure
        named = setting(settings)
        raise type(failure)(
            f"the shadow run's challenger ({named}) fails the checks its shadow run would"
            f" make: {failure}. Fix {named.split('=')[0]} (a version of {settings.model_name} that"
            " scores these features), or unset it to run without a shadow run; a run would"
            " publish the champion and then fail only its shadow run"
        ) from exc
    finally:
        structlog.contextvars.bind_contextvars(
            run_id=settings.run_id, model_version=champion.version
        )
    return {
        "selector": challenger.selector,
        "run_id": challenger.run_id,
        "model_version": prepared.resolved.version,
        "features": len(prepared.plan.inputs),
        "snapshot": prepared.plan.snapshot.label,
        "timings": timer.timings,
    }
