"""``scorer run`` and ``scorer check``: a run, single or sharded, and how every end of it
becomes its summary line and exit code."""

from __future__ import annotations

from contextlib import closing

import structlog

from scorer.config import RunSettings
from scorer.errors import InternalError
from scorer.failures import classify
from scorer.lineage.recorder import Lineage
from scorer.postgres import db, sessions
from scorer.run import challenger, metrics
from scorer.run.prepare import Timer, prepare
from scorer.run.progress import RunProgress
from scorer.run.sharded import ShardRun
from scorer.run.single import SingleRun

log = structlog.get_logger("scorer")


def check(settings: RunSettings) -> int:
    """Everything ``run`` verifies, and its shadow run's challenger when one is set (as that
    run would, over the champion's snapshot); writes nothing."""
    timer = Timer()
    Lineage.configure(settings).ready()  # lineage: the OpenLineage configuration
    url = settings.database_url.get_secret_value()
    shadow = None
    with closing(db.connect(url)) as writer, closing(db.connect(url)) as other:
        sessions.require_session(writer, other)  # a run would refuse this pooler: so does check
        prepared = prepare(settings, writer, timer)
        if settings.shadow_selector is not None:
            resolved, snapshot = prepared.resolved, prepared.plan.snapshot.label
            del prepared  # the champion's model can go before the challenger's loads
            shadow = challenger.check(settings, resolved, snapshot, writer)
    log.info("check.passed", timings=timer.timings, shadow=shadow)
    return 0


def run(settings: RunSettings) -> int:
    """Score the relation and publish atomically; return the exit code.

    Every path ends with one canonical summary line, ``run.succeeded`` or ``run.failed``; an
    internal error (a bug) logs its traceback just before.
    """
    progress = RunProgress(settings)
    execution = ShardRun(progress) if settings.sharded else SingleRun(progress)
    try:
        execution.execute()
    except BaseException as exc:  # every failure, even SIGTERM's, ends in the summary line
        failure = classify(exc)
        if isinstance(failure, InternalError):
            log.exception("run.internal_error", error=str(failure), exc_info=exc)
        progress.pushed = metrics.push(progress, failure)  # best effort: the exit code stands
        progress.summary("run.failed", failure)
        return failure.exit_code
    progress.pushed = metrics.push(progress)
    progress.summary("run.succeeded")
    return 0
