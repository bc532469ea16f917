"""What both lineage backends describe: the tables, the run once started, how it ended, and
the shared namespace of their run ids. The backends (``scorer.lineage.mlflow``,
``scorer.lineage.openlineage``) and the recorder import these; nothing here imports them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scorer.config import RunSettings
    from scorer.model.registry import ResolvedModel

RUN_ID_NAMESPACE = uuid.UUID("c0f6c9b5-5d39-4770-a819-1f77e4399675")
"""uuid5 namespace of OpenLineage run ids (see ``openlineage_run_id``)."""


@dataclass(frozen=True)
class Table:
    """A PostgreSQL relation as OpenLineage's naming spec names it, with its columns.

    Namespace ``postgres://{host}:{port}``, name ``{database}.{schema}.{table}`` (the spec's
    ``Naming.md``); never credentials.
    """

    authority: str  # host:port
    database: str
    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, SQL type), in column order

    @property
    def namespace(self) -> str:
        """The OpenLineage dataset namespace, ``postgres://host:port``."""
        return f"postgres://{self.authority}"

    @property
    def qualified_name(self) -> str:
        """The OpenLineage dataset name, ``database.schema.table``."""
        return f"{self.database}.{self.schema}.{self.name}"

    @property
    def uri(self) -> str:
        """The database as a PostgreSQL URI without credentials."""
        return f"postgresql://{self.authority}/{self.database}"


@dataclass(frozen=True)
class Start:
    """What a run knows once its row is open: what both integrations describe."""

    settings: RunSettings
    resolved: ResolvedModel
    snapshot: str
    snapshot_column: str | None
    entity_type: str
    started_at: datetime
    trigger: str
    features: Table
    predictions: Table  # the parent table of the run's id type
    partition: str  # the run's own partition of it
    scheduled_at: datetime | None  # the CronJob's schedule time, when the run is scheduled

    @property
    def openlineage_run_id(self) -> uuid.UUID:
        """The OpenLineage run id: the same for every attempt of one scoring run.

        ``uuid5`` of ``<postgres namespace>/<database>.<target schema>/<run id>``: the run
        id names a run within its target schema (the primary key of ``scoring_runs``), so
        two environments that reuse a Job name still get distinct run ids.
        """
        p = self.predictions
        return uuid.uuid5(
            RUN_ID_NAMESPACE, f"{p.namespace}/{p.database}.{p.schema}/{self.settings.run_id}"
        )

    def shard_run_id(self, shard: int) -> uuid.UUID:
        """A shard's OpenLineage run id: ``uuid5`` of ``<run's id>/shard/<index>``, the same for
        every attempt of that shard."""
        return uuid.uuid5(RUN_ID_NAMESPACE, f"{self.openlineage_run_id}/shard/{shard}")


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as both integrations record it."""

    succeeded: bool
    finished_at: datetime
    rows_read: int
    rows_scored: int  # rows published (0 when the run failed)
    rows_rejected: int
    figures: dict[str, float | None]  # score statistics; empty when the run failed
    psi: float | None  # the quality gate's score PSI against the previous run, if computed
    timings: dict[str, float]
    error: str | None = None
    kind: str | None = None
    mlflow_run_id: str | None = None  # the MLflow run recording this one, once made
