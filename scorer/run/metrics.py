"""A run's outcome, rows and drift, pushed to a Prometheus Pushgateway when the run ends.

Off unless ``SCORER_PUSHGATEWAY_URL`` is set. ``scorer.run.single.run`` calls ``push`` once,
just before the summary line (which says how the push went), for a run this process ended:
published, refused by the quality gate, or failed. A sharded run pushes from the shard that
publishes or fails it; an attempt that finds its run already published pushes nothing (the
attempt that published it did).

One group per model: grouping key ``job="scorer"``, ``model``, ``namespace``, ``release``, and
no ``instance`` (Prometheus's advice for batch jobs). Every push is a POST (``pushadd``): the
Pushgateway then replaces only the metrics of the same names in the group, so
``scorer_last_success_timestamp_seconds``, pushed on success only, outlives any number of failed
runs (a PUT would replace the whole group and lose it).

Best effort and bounded in time, like the MLflow record: the push runs on a thread the run waits
for at most ``SCORER_PUSHGATEWAY_TIMEOUT_SECONDS``; a Pushgateway that is down, slow or
refusing is a warning (``metrics.push_failed``) and never changes the exit code. Nothing here
runs inside the scoring loop: it reads what the run's state holds at its end.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

from scorer import logs
from scorer.errors import QualityGateError, ScorerError, TerminationSignal

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from scorer.config import RunSettings
    from scorer.run.gate import Verdict
    from scorer.run.record import Counts
    from scorer.run.statistics import ScoreStats

log = structlog.get_logger("scorer")

JOB = "scorer"
"""The ``job`` label of every pushed group."""
OUTCOMES = ("succeeded", "refused", "failed")
"""``scorer_last_run_outcome``'s ``outcome`` values: refused is the quality gate's exit 2."""
VERDICTS = ("passed", "warning", "refused", "overridden", "no_reference", "not_run")
"""``scorer_last_run_quality_gate``'s ``verdict`` values."""
NO_FAILURE = "none"
"""``scorer_last_run_exit_code``'s ``kind`` after a success."""

METRICS: dict[str, str] = {
    "scorer_last_success_timestamp_seconds": "Unix time the model's last successful run ended"
    " (pushed on success only)",
    "scorer_last_run_timestamp_seconds": "Unix time the model's last run ended",
    "scorer_last_run_outcome": "1 for the last run's outcome (succeeded, refused, failed), 0 for"
    " the others",
    "scorer_last_run_exit_code": "The last run's exit code (0, 1 or 2), labelled with its"
    " failure kind (none on success)",
    "scorer_last_run_duration_seconds": "Wall time of the last run, from its start to its end",
    "scorer_last_run_rows_read": "Rows the last run read from the feature relation",
    "scorer_last_run_rows_scored": "Rows the last run scored (published only if it succeeded)",
    "scorer_last_run_rows_rejected": "Rows the last run rejected as unusable",
    "scorer_last_run_score_mean": "Mean score of the last run (NaN when it scored nothing)",
    "scorer_last_run_score_psi": "Score PSI of the last run against the quality gate's reference"
    " run (NaN when the gate computed none)",
    "scorer_last_run_quality_gate": "1 for the quality gate's verdict on the last run, 0 for the"
    " others",
    "scorer_last_run_info": "Always 1: the last run's id, model version and snapshot as labels",
}
"""Every metric the scorer pushes, with its help text (all gauges)."""


class RunEnd(Protocol):
    """What the metrics read of a run at its end (``scorer.run.progress.RunProgress``)."""

    @property
    def settings(self) -> RunSettings: ...
    @property
    def counts(self) -> Counts: ...
    @property
    def stats(self) -> ScoreStats: ...
    @property
    def verdict(self) -> Verdict | None: ...
    @property
    def snapshot(self) -> str | None: ...
    @property
    def model_version(self) -> int | None: ...
    @property
    def ends_run(self) -> bool: ...
    def seconds(self) -> float: ...
    def figures(self) -> dict[str, float | None]: ...


@dataclass(frozen=True)
class Report:
    """One run's end, as pushed."""

    grouping_key: dict[str, str]
    run_id: str
    model_version: str
    snapshot: str
    outcome: str
    kind: str
    exit_code: int
    ended_at: float  # Unix time
    duration: float
    rows_read: int
    rows_scored: int
    rows_rejected: int
    score_mean: float
    score_psi: float
    verdict: str


def grouping_key(settings: RunSettings) -> dict[str, str]:
    """``model``, ``namespace``, ``release`` (``job`` is passed apart); empty when unset."""
    return {
        "model": settings.model_name,
        "namespace": settings.k8s_namespace or "",
        "release": settings.release or "",
    }


def report(run: RunEnd, failure: ScorerError | None) -> Report:
    """What ``push`` sends for ``run``, which ended with ``failure`` (None: it succeeded)."""
    if failure is None:
        outcome, kind, code = "succeeded", NO_FAILURE, 0
    else:
        refused = isinstance(failure, QualityGateError)
        outcome, kind, code = "refused" if refused else "failed", failure.kind, failure.exit_code
    psi = None if run.verdict is None else run.verdict.psi()
    mean = run.figures().get("score_mean")
    settings = run.settings
    return Report(
        grouping_key=grouping_key(settings),
        run_id=settings.run_id,
        model_version="" if run.model_version is None else str(run.model_version),
        snapshot=run.snapshot or "",
        outcome=outcome,
        kind=kind,
        exit_code=code,
        ended_at=time.time(),
        duration=run.seconds(),
        rows_read=run.counts.read,
        rows_scored=run.stats.count,
        rows_rejected=run.counts.rejected,
        score_mean=math.nan if mean is None else mean,
        score_psi=math.nan if psi is None else psi,
        verdict=verdict_of(run.verdict, failure),
    )


def verdict_of(verdict: Verdict | None, failure: ScorerError | None) -> str:
    """The gate's verdict as one of ``VERDICTS``."""
    if verdict is None:
        return "refused" if isinstance(failure, QualityGateError) else "not_run"
    if verdict.reference_run_id is None:
        return "no_reference"
    if verdict.failed:
        return "overridden" if verdict.override is not None else "refused"
    return "warning" if verdict.warnings else "passed"


def collect(report: Report) -> CollectorRegistry:
    """The metrics of one report, in a registry of their own."""
    from prometheus_client import CollectorRegistry, Gauge  # noqa: PLC0415 - only when pushing

    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, METRICS[name], labels, registry=registry)

    if report.outcome == "succeeded":
        gauge("scorer_last_success_timestamp_seconds").set(report.ended_at)
    gauge("scorer_last_run_timestamp_seconds").set(report.ended_at)
    outcome = gauge("scorer_last_run_outcome", ("outcome",))
    for value in OUTCOMES:
        outcome.labels(value).set(1 if value == report.outcome else 0)
    gauge("scorer_last_run_exit_code", ("kind",)).labels(report.kind).set(report.exit_code)
    gauge("scorer_last_run_duration_seconds").set(report.duration)
    gauge("scorer_last_run_rows_read").set(report.rows_read)
    gauge("scorer_last_run_rows_scored").set(report.rows_scored)
    gauge("scorer_last_run_rows_rejected").set(report.rows_rejected)
    gauge("scorer_last_run_score_mean").set(report.score_mean)
    gauge("scorer_last_run_score_psi").set(report.score_psi)
    gate = gauge("scorer_last_run_quality_gate", ("verdict",))
    for value in VERDICTS:
        gate.labels(value).set(1 if value == report.verdict else 0)
    info = gauge("scorer_last_run_info", ("run_id", "model_version", "snapshot"))
    info.labels(report.run_id, report.model_version, report.snapshot).set(1)
    return registry


def push(run: RunEnd, failure: ScorerError | None = None) -> dict[str, object]:
    """Push the run's metrics if a Pushgateway is configured and this process ended the run.

    Returns what the summary line says of it: ``pushgateway`` is ``off`` (no URL), ``skipped``
    (another attempt or shard ends the run), ``pushed`` or ``failed``, with the ``seconds`` it
    took. Never raises: a failed or timed-out push is the warning ``metrics.push_failed``.
    """
    settings = run.settings
    if settings.pushgateway_url is None:
        return {"pushgateway": "off"}
    if not run.ends_run:
        return {"pushgateway": "skipped"}
    begin = time.perf_counter()
    errors: list[BaseException] = []
    timeout = settings.pushgateway_timeout_seconds

    def send() -> None:
        try:
            from prometheus_client import pushadd_to_gateway  # noqa: PLC0415

            ended = report(run, failure)
            pushadd_to_gateway(
                settings.pushgateway_url or "",
                job=JOB,
                registry=collect(ended),
                grouping_key=ended.grouping_key,
                timeout=timeout,
            )
        except Exception as exc:  # any failure of the push is the warning below
            errors.append(exc)

    sender = threading.Thread(target=send, name="scorer-metrics", daemon=True)
    try:
        sender.start()
        sender.join(timeout)
    except TerminationSignal as exc:  # SIGTERM while pushing: the run's outcome stands
        errors.append(exc)
    seconds = round(time.perf_counter() - begin, 3)
    if not errors and sender.is_alive():
        errors.append(TimeoutError(f"no answer within {timeout:g} s"))
    if errors:
        log.warning(
            "metrics.push_failed",
            error=logs.redact(f"{type(errors[0]).__name__}: {errors[0]}"),
            seconds=seconds,
            detail="the run's metrics are not in the Pushgateway; its outcome and exit code stand",
        )
        return {"pushgateway": "failed", "seconds": seconds}
    return {"pushgateway": "pushed", "seconds": seconds}
