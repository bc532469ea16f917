"""Lineage where people look: each scoring run as an MLflow run and as OpenLineage events.

A run calls one line per hook (``scorer.run.single.SingleRun.execute``):

- ``Lineage.configure(settings)`` first: the OpenLineage configuration's syntax is checked
  now (a malformed ``OPENLINEAGE_URL`` is exit 2 before anything is written), and the client
  is built on a thread of its own, so its import overlaps resolving and loading the model;
- ``ready()`` after the checks, before the run row opens: waits for that client (a bad
  configuration is exit 2, still before anything is written);
- ``started(...)`` once the row opens: OpenLineage START;
- ``published(...)`` after publish: the MLflow run (FINISHED), then COMPLETE;
- ``failed(...)`` when an opened run fails: the FAILED MLflow run, then FAIL.

A shard of a sharded run (``scorer.run.sharded``) describes the run with ``started`` once it has
joined it (only the shard that opened the run announces its START), sends its own START and
COMPLETE or FAIL with ``shard_started`` and ``shard_ended``, and ``close()``s the events at
its end; the shard that publishes or fails the run also records and ends the run as above.

Both integrations are best effort: an MLflow server or a lineage endpoint that is down is a
warning, never a failed run, and the run row says what is missing
(``mlflow_record_status``). Nothing here runs inside the scoring loop; the events travel on a
thread (``scorer.lineage.openlineage``), and the run waits at most a few seconds for them at
its end. The MLflow record is ``scorer.lineage.mlflow``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg2
import structlog

from scorer import logs
from scorer.errors import ConfigError, ScorerError, TerminationSignal
from scorer.io.sink import PARENTS, partition_name
from scorer.lineage.config import OpenLineageConfig, openlineage_config
from scorer.lineage.types import Outcome, Start, Table
from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier

if TYPE_CHECKING:
    from scorer.config import RunSettings
    from scorer.io.features import FeaturePlan
    from scorer.lineage.openlineage import Emitter
    from scorer.model.registry import ResolvedModel

log = structlog.get_logger("scorer")

_BUILD_WAIT_SECONDS = 120.0


def scheduled_time(settings: RunSettings, trigger: str) -> datetime | None:
    """The CronJob's schedule time of a scheduled run: its Job is ``<cronjob>-<minutes>``
    (the CronJob controller's naming, as ``scorer.run.record.trigger_of`` reads it)."""
    job, cronjob = settings.k8s_job, settings.k8s_cronjob
    if trigger != "scheduled" or not job or not cronjob:
        return None
    suffix = job.removeprefix(f"{cronjob}-")
    return datetime.fromtimestamp(int(suffix) * 60, UTC) if suffix.isdigit() else None


@dataclass
class Lineage:
    """One run's lineage: what was sent, what is missing, and the time it cost the run."""

    settings: RunSettings
    openlineage: OpenLineageConfig | None
    start: Start | None = None
    mlflow_status: str | None = None  # recorded | missing | disabled
    mlflow_run_id: str | None = None
    mlflow_error: str | None = None
    events: str | None = None  # delivered | failed | undelivered (None: off or not sent)
    seconds: float = 0.0  # wall time the run's own thread spent here
    timings: dict[str, float] = field(default_factory=dict)  # the same, per step
    _emitter: Emitter | None = None
    _closed: bool = False
    _builder: threading.Thread | None = None
    _build_error: BaseException | None = None

    @classmethod
    def configure(cls, settings: RunSettings) -> Lineage:
        """Check the configuration's syntax now; build the OpenLineage client on a thread."""
        lineage = cls(settings, None)
        with lineage._timed("configure"):
            lineage.openlineage = openlineage_config()
            if lineage.openlineage is not None:
                lineage._builder = threading.Thread(
                    target=lineage._build, name="scorer-openlineage-setup", daemon=True
                )
                lineage._builder.start()
        return lineage

    @property
    def active(self) -> bool:
        """Whether either integration is on for this run."""
        return self.settings.mlflow_record or self.openlineage is not None

    def _build(self) -> None:
        try:
            from scorer.lineage import openlineage  # noqa: PLC0415 - off the run's own thread

            self._emitter = openlineage.connect()
        except Exception as exc:  # reported by ready(), on the run's thread
            self._build_error = exc

    def ready(self) -> None:
        """Wait for the OpenLineage client; ``ConfigError`` (exit 2) if it cannot be built."""
        if self._builder is None:
            return
        with self._timed("ready"):
            self._builder.join(_BUILD_WAIT_SECONDS)
            error = self._build_error
            if isinstance(error, ImportError):
                # Two threads importing at once can trip over a module import cycle: build
                # again here, with the run's own thread idle.
                try:
                    from scorer.lineage import openlineage  # noqa: PLC0415

                    self._emitter, error = openlineage.connect(), None
                except Exception as again:
                    error = again
            if error is None and self._emitter is None:
                error = TimeoutError("the OpenLineage client was not built")
            if error is not None:
                raise ConfigError(
                    "OpenLineage configuration (OPENLINEAGE_URL, OPENLINEAGE__TRANSPORT__*,"
                    f" openlineage.yml): {type(error).__name__}: {error}"
                ) from None

    def started(  # noqa: PLR0913 - the facts that describe the run, one each
        self,
        writer: db.Connection,
        resolved: ResolvedModel,
        plan: FeaturePlan,
        started_at: datetime,
        trigger: str,
        *,
        announce: bool = True,
    ) -> None:
        """The run's row is open: describe the run. When ``announce`` (this process opened the
        run), also mark the run row with its OpenLineage run id and send START; a shard that
        joins a run only describes it, and never waits on the run row."""
        if not self.active:
            return
        with self._timed("start"), _best_effort("lineage.start_failed"):
            settings = self.settings
            with db.autocommit(writer), writer.cursor() as cur:
                authority = _authority(writer)
                features = _table(cur, authority, plan.relation.sql, str(plan.relation))
                parent = f"{quote_identifier(settings.target_schema)}.{PARENTS[plan.entity_kind]}"
                predictions = _table(cur, authority, parent, parent)
                self.start = start = Start(
                    settings=settings,
                    resolved=resolved,
                    snapshot=plan.snapshot.label,
                    snapshot_column=plan.snapshot.column,
                    entity_type=plan.entity_kind,
                    started_at=started_at,
                    trigger=trigger,
                    features=features,
                    predictions=predictions,
                    partition=partition_name(settings.run_id),
                    scheduled_at=scheduled_time(settings, trigger),
                )
                if not announce:
                    return
                run_id = start.openlineage_run_id if self.openlineage else None
                cur.execute(
                    f"UPDATE {_runs_table(settings)} SET openlineage_run_id = %s,"
                    " mlflow_record_run_id = NULL, mlflow_record_status = NULL,"
                    " mlflow_record_error = NULL WHERE run_id = %s",
                    (None if run_id is None else str(run_id), settings.run_id),
                )
            self._send("START", None)

    def published(self, writer: db.Connection, outcome: Outcome) -> None:
        """The run is published: record it in MLflow (FINISHED), then send COMPLETE."""
        self._finish(writer, outcome)

    def failed(self, writer: db.Connection, outcome: Outcome) -> None:
        """An opened run failed (nothing published): the FAILED MLflow run, then FAIL."""
        self._finish(writer, outcome)

    def shard_started(self, shard: int) -> None:
        """This shard starts scoring its part of the run: the shard's START."""
        with self._timed("shard_start"), _best_effort("lineage.shard_start_failed"):
            self._send("START", None, shard)

    def shard_ended(self, shard: int, outcome: Outcome) -> None:
        """This shard's part is committed (its COMPLETE) or the shard failed (its FAIL)."""
        with self._timed("shard_end"), _best_effort("lineage.shard_end_failed", ended=True):
            self._send("COMPLETE" if outcome.succeeded else "FAIL", outcome, shard)

    def close(self) -> None:
        """Wait a few seconds at most for the events still on their way (once)."""
        if self._emitter is None or self._closed:
            return
        self._closed = True
        with self._timed("events"):
            self.events = self._emitter.close()

    def _finish(self, writer: db.Connection, outcome: Outcome) -> None:
        if self.start is None:
            return
        with _best_effort("lineage.finish_failed", ended=True):
            with self._timed("record"):
                outcome = self._record(self.start, outcome)
                self._mark(writer)
            self._send("COMPLETE" if outcome.succeeded else "FAIL", outcome)
            self.close()

    def _record(self, start: Start, outcome: Outcome) -> Outcome:
        if not self.settings.mlflow_record:
            self.mlflow_status = "disabled"
            return outcome
        from scorer.lineage import mlflow as mlflow_record  # noqa: PLC0415

        try:
            self.mlflow_run_id = mlflow_record.record(start, outcome, self.openlineage is not None)
        except mlflow_record.RecordError as exc:
            self.mlflow_status, self.mlflow_run_id = "missing", exc.run_id
            self.mlflow_error = logs.redact(str(exc))[:2000]
            log.warning(
                "mlflow.record_missing",
                error=self.mlflow_error,
                experiment=self.settings.experiment,
                detail="the scoring run is not recorded in MLflow; its row and predictions"
                " are as the run left them",
            )
            return outcome
        self.mlflow_status = "recorded"
        log.info(
            "mlflow.recorded",
            mlflow_record_run_id=self.mlflow_run_id,
            experiment=self.settings.experiment,
        )
        return replace(outcome, mlflow_run_id=self.mlflow_run_id)

    def _mark(self, writer: db.Connection) -> None:
        """The run row says whether the MLflow record is there (best effort)."""
        if writer.closed:
            return
        try:
            with db.autocommit(writer), writer.cursor() as cur:
                cur.execute(
                    f"UPDATE {_runs_table(self.settings)} SET mlflow_record_run_id = %s,"
                    " mlflow_record_status = %s, mlflow_record_error = %s WHERE run_id = %s",
                    (
                        self.mlflow_run_id,
                        self.mlflow_status,
                        self.mlflow_error,
                        self.settings.run_id,
                    ),
                )
        except (psycopg2.Error, ScorerError) as exc:
            log.warning("lineage.row_not_marked", error=f"{type(exc).__name__}: {exc}")

    def _send(self, kind: str, outcome: Outcome | None, shard: int | None = None) -> None:
        if self._emitter is None or self.start is None or self.openlineage is None:
            return
        from scorer.lineage import openlineage  # noqa: PLC0415 - imported by ready() already

        event = openlineage.run_event(kind, self.start, outcome, self.openlineage.namespace, shard)
        self._emitter.emit(event)

    def summary(self) -> dict[str, Any]:
        """What the run's summary line says about its lineage."""
        return {
            "mlflow_record": self.mlflow_status,
            "mlflow_record_run_id": self.mlflow_run_id,
            "openlineage": "off" if self.openlineage is None else self.events,
            "openlineage_run_id": (
                None
                if self.start is None or self.openlineage is None
                else str(self.start.openlineage_run_id)
            ),
            **self._shard_summary(),
            "seconds": round(self.seconds, 3),
            "timings": self.timings,
        }

    def _shard_summary(self) -> dict[str, str]:
        """A shard's own OpenLineage run id, in a sharded run's summary line."""
        if self.start is None or self.openlineage is None or self.settings.shards == 1:
            return {}
        return {"openlineage_shard_run_id": str(self.start.shard_run_id(self.settings.shard))}

    @contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        begin = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - begin
            self.seconds += spent
            self.timings[step] = round(self.timings.get(step, 0.0) + spent, 3)


@contextmanager
def _best_effort(event: str, *, ended: bool = False) -> Iterator[None]:
    """Lineage never fails a run: anything that goes wrong is a warning.

    Once the run has ``ended`` (published, or failed), a SIGTERM only cuts the lineage short:
    the run's outcome stands (a published run still exits 0). Before, it stops the run as
    anywhere else.
    """
    caught: tuple[type[BaseException], ...] = (
        (Exception, TerminationSignal) if ended else (Exception,)
    )
    try:
        yield
    except caught as exc:
        log.warning(event, error=f"{type(exc).__name__}: {exc}")


def _runs_table(settings: RunSettings) -> str:
    return f"{quote_identifier(settings.target_schema)}.scoring_runs"


def _authority(conn: db.Connection) -> str:
    """``host:port`` of the server the connection reached (a Unix socket counts as localhost)."""
    host, port = conn.info.host or "localhost", conn.info.port or 5432
    if host.startswith("/"):
        host = "localhost"
    elif ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{port}"


def _table(cur: db.Cursor, authority: str, relation_sql: str, shown: str) -> Table:
    """The relation's schema, name and columns from the catalog (one query)."""
    cur.execute(
        "SELECT n.nspname, c.relname, current_database(),"
        " (SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod))"
        "   ORDER BY a.attnum) FROM pg_attribute a"
        "  WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s)",
        (relation_sql,),
    )
    row = cur.fetchone()
    if row is None:
        raise LookupError(f"relation {shown} is not in the catalog")
    schema, name, database, columns = row
    return Table(
        authority, str(database), str(schema), str(name), tuple((c, t) for c, t in columns or ())
    )
