"""A scoring run's OpenLineage events, sent with the ``openlineage-python`` client.

START when the run's row opens, then COMPLETE or FAIL; every attempt of one run shares its
run id (``scorer.lineage.recorder.Start.openlineage_run_id``). The job is ``scorer.<model name>`` in
the namespace ``OPENLINEAGE_NAMESPACE`` (default ``scorer``).

A sharded run also sends a START and a COMPLETE or FAIL per shard: job
``scorer.<model name>.shard``, a run id of its own per shard (``Start.shard_run_id``, shared
by that shard's retries), the scoring run as its ``parent`` (and the Kubernetes Job as the
``root``), its own rows in the statistics and its own table as the output's partition.

- **run facets**: ``nominalTime`` (the CronJob's schedule time, for a scheduled run),
  ``parent`` (the Kubernetes Job as the run of its CronJob), ``errorMessage`` on FAIL,
  ``processing_engine`` and ``scorer``, a custom facet (model name, version, selector, the
  MLflow run that trained the model and the one recording this run; schema
  ``scorer/schemas/ScorerRunFacet.json``);
- **job facet**: ``jobType`` (BATCH);
- **input**: the features relation, named as the naming spec says for PostgreSQL (namespace
  ``postgres://host:port``, name ``database.schema.table``) with ``schema`` and
  ``dataSource`` facets, the snapshot as a ``subset`` condition, ``inputStatistics`` at the end;
- **output**: the predictions table of the run's id type with ``schema``, ``dataSource``, the
  run's partition as a ``subset`` and, on COMPLETE, ``outputStatistics`` (``rowCount``: the rows
  published).

The client is configured its own way (``OPENLINEAGE_URL``/``OPENLINEAGE_API_KEY``,
``OPENLINEAGE__TRANSPORT__*``, ``openlineage.yml``), and its events travel on a thread of their
own (``Emitter``): the run never waits for a slow endpoint while it scores, and at its end waits
at most ``DELIVERY_WAIT_SECONDS``. An endpoint that is down is a warning.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import attr
import structlog
from openlineage.client import OpenLineageClient
from openlineage.client.constants import __version__ as client_version
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    base_subset_dataset,
    datasource_dataset,
    error_message_run,
    input_statistics_input_dataset,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
)

from scorer import __version__
from scorer.io.sink import shard_table_name
from scorer.lineage.config import check_http_url
from scorer.lineage.types import RUN_ID_NAMESPACE

if TYPE_CHECKING:
    from openlineage.client.transport import Transport

    from scorer.lineage.types import Outcome, Start, Table

log = structlog.get_logger("scorer")

PRODUCER = f"urn:scorer:{__version__}"
"""Who produced the events and facets: this scorer release (a URN: it has no public URL)."""
SCORER_FACET_SCHEMA = "urn:scorer:facets:1-1-0:ScorerRunFacet.json"
"""``$id`` of the custom facet's JSON schema, shipped as ``scorer/schemas/ScorerRunFacet.json``."""
DELIVERY_WAIT_SECONDS = 5.0
"""How long the end of a run waits for its events to be sent (retries included)."""


@attr.define
class ScorerRunFacet(RunFacet):
    """What the scorer adds to each event: which model version scored, chosen how."""

    modelName: str  # noqa: N815 - the facet's JSON field names
    modelVersion: int  # noqa: N815
    modelSelector: str  # noqa: N815
    scoringRunId: str  # noqa: N815
    snapshot: str
    trigger: str
    modelSource: str | None = attr.field(default=None)  # noqa: N815
    modelId: str | None = attr.field(default=None)  # noqa: N815
    mlflowRunId: str | None = attr.field(default=None)  # noqa: N815 - the model's training run
    mlflowRecordRunId: str | None = attr.field(default=None)  # noqa: N815 - the run's record
    shards: int = attr.field(default=1)
    shard: int | None = attr.field(default=None)  # a shard's own events: its index
    scorerVersion: str = attr.field(default=__version__)  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return f"{SCORER_FACET_SCHEMA}#/$defs/ScorerRunFacet"


def connect() -> Emitter:
    """The client, configured its own way; every http transport's URL checked."""
    client = OpenLineageClient()
    for transport in _transports(client.transport):
        if transport.kind in ("http", "async_http"):
            url = str(getattr(getattr(transport, "config", None), "url", ""))
            check_http_url(url, "the OpenLineage http transport's url")
    return Emitter(client)


def _transports(transport: Transport) -> Iterator[Transport]:
    yield transport
    for child in getattr(transport, "transports", None) or ():  # composite
        yield from _transports(child)


class Emitter:
    """Sends events in order on a thread of its own; the run's thread only queues them."""

    _STOP: ClassVar[object] = object()

    def __init__(self, client: OpenLineageClient) -> None:
        self.client = client
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.queued = self.sent = self.failed = 0

    def emit(self, event: RunEvent) -> None:
        """Queue ``event``; it is sent with the log context of this moment."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name="scorer-openlineage", daemon=True
            )
            self._thread.start()
        self.queued += 1
        self._queue.put((contextvars.copy_context(), event))

    def close(self, wait: float = DELIVERY_WAIT_SECONDS) -> str:
        """Wait up to ``wait`` seconds for the queued events: ``delivered``, ``failed`` (the
        endpoint refused one or was down) or ``undelivered`` (still trying: given up)."""
        if self._thread is None:
            return "delivered"
        self._queue.put(self._STOP)
        self._thread.join(wait)
        pending = self.queued - self.sent - self.failed
        if pending:
            log.warning(
                "openlineage.undelivered",
                events=pending,
                waited_s=wait,
                detail="the lineage endpoint did not take the run's last events in time",
            )
            return "undelivered"
        return "failed" if self.failed else "delivered"

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            context, event = item
            context.run(self._send, event)

    def _send(self, event: RunEvent) -> None:
        kind = event.eventType.value if event.eventType else None
        try:
            self.client.emit(event)
        except Exception as exc:  # the endpoint is down or refused it: a warning, never a failure
            self.failed += 1
            log.warning(
                "openlineage.emit_failed",
                event_type=kind,
                error=f"{type(exc).__name__}: {exc}"[:2000],
                detail="lineage is missing this event; the run itself is unaffected",
            )
        else:
            self.sent += 1
            log.info("openlineage.sent", event_type=kind, openlineage_run_id=event.run.runId)


def run_event(
    kind: str, start: Start, outcome: Outcome | None, namespace: str, shard: int | None = None
) -> RunEvent:
    """The run's START, COMPLETE or FAIL event; with ``shard``, that shard's own."""
    settings, model = start.settings, start.resolved
    run_facets: dict[str, RunFacet] = {
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=__version__,
            name="scorer",
            openlineageAdapterVersion=client_version,
            producer=PRODUCER,
        ),
        "scorer": ScorerRunFacet(
            modelName=model.name,
            modelVersion=model.version,
            modelSelector=model.selector,
            scoringRunId=settings.run_id,
            snapshot=start.snapshot,
            trigger=start.trigger,
            modelSource=model.source,
            modelId=model.model_id,
            mlflowRunId=model.mlflow_run_id,
            mlflowRecordRunId=None if outcome is None else outcome.mlflow_run_id,
            shards=settings.shards,
            shard=shard,
            producer=PRODUCER,
        ),
    }
    if start.scheduled_at is not None:
        run_facets["nominalTime"] = nominal_time_run.NominalTimeRunFacet(
            nominalStartTime=_iso(start.scheduled_at), producer=PRODUCER
        )
    parent = _parent(start, namespace) if shard is None else _run_as_parent(start, namespace)
    if parent is not None:
        run_facets["parent"] = parent
    if kind == "FAIL" and outcome is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=f"{outcome.kind}: {outcome.error}",
            programmingLanguage="python",
            producer=PRODUCER,
        )
    job = Job(
        namespace=namespace,
        name=_job_name(start) if shard is None else f"{_job_name(start)}.shard",
        facets={
            "jobType": job_type_job.JobTypeJobFacet(
                processingType="BATCH", integration="SCORER", jobType="JOB", producer=PRODUCER
            )
        },
    )
    run_id = start.openlineage_run_id if shard is None else start.shard_run_id(shard)
    return RunEvent(
        eventType=RunState[kind],
        eventTime=_iso(_event_time(start, outcome, shard)),
        run=Run(runId=str(run_id), facets=run_facets),
        job=job,
        inputs=[_input(start, outcome)],
        outputs=[_output(start, outcome, shard)],
        producer=PRODUCER,
    )


def _job_name(start: Start) -> str:
    return f"scorer.{start.resolved.name}"


def _event_time(start: Start, outcome: Outcome | None, shard: int | None) -> datetime:
    """The run starts when its row opened; a shard when it sends its START; both end when
    their outcome is known."""
    if outcome is not None:
        return outcome.finished_at
    return start.started_at if shard is None else datetime.now(UTC)


def _parent(start: Start, namespace: str) -> parent_run.ParentRunFacet | None:
    """The Kubernetes Job as the parent run, of the CronJob (or the Job itself) as the job."""
    settings = start.settings
    job = settings.k8s_job
    if not job:
        return None
    where = settings.k8s_namespace or "default"
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=str(kubernetes_job_run_id(where, job))),
        job=parent_run.Job(namespace=namespace, name=f"{where}.{settings.k8s_cronjob or job}"),
        producer=PRODUCER,
    )


def _run_as_parent(start: Start, namespace: str) -> parent_run.ParentRunFacet:
    """A shard's parent: the scoring run; its root: the Kubernetes Job, when there is one."""
    job = _parent(start, namespace)
    root = None
    if job is not None:
        root = parent_run.Root(
            run=parent_run.RootRun(runId=job.run.runId),
            job=parent_run.RootJob(namespace=job.job.namespace, name=job.job.name),
        )
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=str(start.openlineage_run_id)),
        job=parent_run.Job(namespace=namespace, name=_job_name(start)),
        root=root,
        producer=PRODUCER,
    )


def kubernetes_job_run_id(namespace: str, job: str) -> uuid.UUID:
    """The parent run id: ``uuid5`` of ``kubernetes/<namespace>/<job>``."""
    return uuid.uuid5(RUN_ID_NAMESPACE, f"kubernetes/{namespace}/{job}")


def _input(start: Start, outcome: Outcome | None) -> InputDataset:
    table = start.features
    input_facets: dict[str, Any] = {}
    if start.snapshot_column is not None:
        input_facets["subset"] = base_subset_dataset.InputSubsetInputDatasetFacet(
            inputCondition=base_subset_dataset.CompareSubsetCondition(
                left=base_subset_dataset.FieldBaseCompareExpression(field=start.snapshot_column),
                right=base_subset_dataset.LiteralCompareExpression(value=start.snapshot),
                comparison="EQUAL",
            ),
            producer=PRODUCER,
        )
    if outcome is not None:
        input_facets["inputStatistics"] = (
            input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                rowCount=outcome.rows_read, producer=PRODUCER
            )
        )
    return InputDataset(
        namespace=table.namespace,
        name=table.qualified_name,
        facets=_dataset_facets(table),
        inputFacets=input_facets,
    )


def _output(start: Start, outcome: Outcome | None, shard: int | None) -> OutputDataset:
    table = start.predictions
    if shard is None:
        partition, dimensions = start.partition, {"run_id": start.settings.run_id}
    else:
        partition = shard_table_name(start.settings.run_id, shard)
        dimensions = {"run_id": start.settings.run_id, "shard": str(shard)}
    output_facets: dict[str, Any] = {
        "subset": base_subset_dataset.OutputSubsetOutputDatasetFacet(
            outputCondition=base_subset_dataset.PartitionSubsetCondition(
                partitions=[
                    base_subset_dataset.Partition(
                        identifier=f"{table.schema}.{partition}", dimensions=dimensions
                    )
                ]
            ),
            producer=PRODUCER,
        )
    }
    if outcome is not None and outcome.succeeded:
        output_facets["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=outcome.rows_scored, producer=PRODUCER
            )
        )
    return OutputDataset(
        namespace=table.namespace,
        name=table.qualified_name,
        facets=_dataset_facets(table),
        outputFacets=output_facets,
    )


def _dataset_facets(table: Table) -> dict[str, Any]:
    return {
        "schema": schema_dataset.SchemaDatasetFacet(
            fields=[
                schema_dataset.SchemaDatasetFacetFields(
                    name=column, type=sql_type, ordinal_position=position
                )
                for position, (column, sql_type) in enumerate(table.columns, start=1)
            ],
            producer=PRODUCER,
        ),
        "dataSource": datasource_dataset.DatasourceDatasetFacet(
            name=table.namespace, uri=table.namespace, producer=PRODUCER
        ),
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
