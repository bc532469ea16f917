"""Write a run's predictions into its own partition of ``predictions``.

Each run loads a fresh table shaped like ``predictions`` whose column defaults are the
run's lineage constants, so the client sends only narrow binary COPY rows
(entity, score, label) and PostgreSQL fills the lineage in. The primary key is built once,
sorted, after the load (cheaper than maintaining it row by row: see ``KEY_BUILD``), and the
table is attached as the run's partition in the transaction that publishes the run. A failed
or killed run rolls the table back with everything else; a CHECK on ``run_id`` lets the
attach skip scanning the rows. The schema's owner makes, keys, attaches and drops the table,
through the schema's functions (``scorer.postgres.privileges``): the run's role never owns it.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg2.errors

from scorer.errors import DuplicateEntityError
from scorer.postgres import db
from scorer.postgres.identifiers import quote_identifier

_UNSAFE = re.compile(r"[^a-z0-9_]+")
PARENTS = {"bigint": "predictions", "text": "predictions_text", "uuid": "predictions_uuid"}
"""The parent table of each entity id type: one target schema holds every model."""


@dataclass(frozen=True)
class LineageColumns:
    """The per-run constants every prediction row carries."""

    run_id: str
    model_name: str
    model_version: int
    snapshot: str
    scored_at: datetime


def partition_name(run_id: str) -> str:
    """The run's partition table: readable, unique per run id, within 63 bytes."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    readable = _UNSAFE.sub("_", run_id.lower())[:40].strip("_")
    return f"predictions_{readable}_{digest}" if readable else f"predictions_{digest}"


SERIAL_KEY_BUILD = (("max_parallel_maintenance_workers", "0"), ("maintenance_work_mem", "1GB"))
"""One serial sort, in memory up to 1 GB (about 10 million rows; a larger run or shard spills
to disk, as before), set for the key's transaction only (``SET LOCAL``)."""

KEY_BUILD: dict[str, tuple[tuple[str, str], ...]] = {"bigint": SERIAL_KEY_BUILD}
"""The key build's settings per id type; a type not named keeps the server's own.

Why (``python -m benchmarks.key_build``; ``benchmarks/RESULTS.md``, "Key build"): what caps a
sharded run is the server's CPU per row. PostgreSQL's default build (2 parallel workers, cut
to 1 by 64 MB of ``maintenance_work_mem``) sorts in two participants that each write their
rows to disk for the leader to merge. For bigint ids, whose comparisons are cheap, that
overhead is a large share: one in-memory sort took 0.59-0.92 of the key's CPU (two sittings,
1M and 5M rows), in the same wall time. For text ids the comparisons (the collation's) are
most of the cost and parallel workers add little to it: the serial sort took 0.76-1.05 of the
CPU but 1.2 times the wall time, so text ids keep the default. uuid ids were not measured and
keep it too. The memory is taken as the sort needs it (about 90 bytes a row).

Measured and left alone: the key created before the COPY (bigint ids: 1.6-2.0 times the
CPU even in ascending order; text ids: 0.7-0.8 in ascending order but 2.1 times shuffled, and
a run's ids come in the relation's order, whatever that is); ``COLLATE "C"`` on the key's
columns (0.7-0.9 of the key's CPU on text ids, but a partition's collations must match its
parent's, ``run_id`` is the parent's partition key and cannot change, and ``entity_id`` alone
would need a migration that rebuilds every published partition's index); no key of the run's
own (``ATTACH PARTITION`` builds the parent's primary key index anyway: the same cost). The
key stays the duplicate-id check.
"""


class RunPartition:
    """The table one run loads and publishes as its partition of the id type's parent.

    The table is made, keyed and attached by the schema's functions (migration 8, see
    ``scorer.postgres.privileges``): it belongs to the schema's owner, and the run's role may only
    COPY into it until it is published.
    """

    def __init__(
        self, schema: str, lineage: LineageColumns, entity_kind: str, labels: bool
    ) -> None:
        self.lineage = lineage
        self.entity_kind = entity_kind
        self.schema = quote_identifier(schema)
        self.parent = f"{self.schema}.{PARENTS[entity_kind]}"
        self.key_build = KEY_BUILD.get(entity_kind, ())
        self.name = partition_name(lineage.run_id)
        self.table = f"{self.schema}.{quote_identifier(self.name)}"
        columns = "entity_id, score, label" if labels else "entity_id, score"
        self.copy_statement = f"COPY {self.table} ({columns}) FROM STDIN (FORMAT binary)"

    def carrying_reasons(self) -> RunPartition:
        """This table, its rows carrying the ``reasons`` column too (``scorer.model.reasons``,
        written last by ``wire.encode_predictions``)."""
        self.copy_statement = self.copy_statement.replace(") FROM STDIN", ", reasons) FROM STDIN")
        return self

    def create(self, cur: db.Cursor) -> None:
        """Create the empty table with its lineage defaults and run id CHECK (not yet committed)."""
        self._create(cur, shard=False, bounds=(None, None))

    def _create(
        self, cur: db.Cursor, *, shard: bool, bounds: tuple[str | None, str | None]
    ) -> None:
        lineage = self.lineage
        cur.execute(
            f"SELECT {self.schema}.run_table_create(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                self.name,
                self.entity_kind,
                lineage.run_id,
                lineage.model_name,
                lineage.model_version,
                lineage.snapshot,
                lineage.scored_at,
                shard,
                *bounds,
            ),
        )

    def add_key(self, cur: db.Cursor, settings: Sequence[tuple[str, str]] | None = None) -> None:
        """Build the primary key once, after the load, with ``settings`` (default: the id
        type's ``KEY_BUILD``; the benchmark compares others) set until the transaction ends.

        A duplicated entity id fails the key: ``DuplicateEntityError`` names one of them.
        """
        for name, value in self.key_build if settings is None else settings:
            cur.execute("SELECT set_config(%s, %s, true)", (name, value))
        try:
            cur.execute(f"SELECT {self.schema}.run_table_add_key(%s)", (self.name,))
        except psycopg2.errors.UniqueViolation as exc:
            raise DuplicateEntityError(_duplicate_message(exc, self.lineage)) from None

    def attach(self, cur: db.Cursor) -> None:
        """Build the primary key, then attach the table as the run's partition."""
        self.add_key(cur)
        cur.execute(
            f"SELECT {self.schema}.run_table_publish(%s, %s, %s)",
            (self.name, self.entity_kind, self.lineage.run_id),
        )


def shard_table_name(run_id: str, shard: int) -> str:
    """A shard's own table until publish: readable, unique per (run id, shard), in 63 bytes."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    readable = _UNSAFE.sub("_", run_id.lower())[:34].strip("_")
    base = f"predictions_{readable}_{digest}" if readable else f"predictions_{digest}"
    return f"{base}_s{shard}"


Bounds = tuple[str | None, str | None]
"""A shard's range of entity ids: (lower inclusive, upper exclusive), ``None`` meaning open."""


class ShardTable(RunPartition):
    """One shard's table: the run's lineage defaults, and a CHECK of the shard's id range, so
    that at publish it becomes a range partition of the run's table without a scan."""

    def __init__(
        self,
        schema: str,
        lineage: LineageColumns,
        entity_kind: str,
        labels: bool,
        part: tuple[int, Bounds | None],
    ) -> None:
        """``part``: the shard's index and its id range (``None``: the shard has none)."""
        super().__init__(schema, lineage, entity_kind, labels)
        shard, bounds = part
        self.shard = shard
        self.name = shard_table_name(lineage.run_id, shard)
        self.table = f"{self.schema}.{quote_identifier(self.name)}"
        columns = "entity_id, score, label" if labels else "entity_id, score"
        self.copy_statement = f"COPY {self.table} ({columns}) FROM STDIN (FORMAT binary)"
        self._bounds = bounds or (None, None)

    def create(self, cur: db.Cursor) -> None:
        """Create the empty table (in the shard's transaction), with the CHECKs
        ``scorer_run_id`` and ``scorer_shard_range``; a retry's replaces nothing committed,
        since a shard's table commits only with its success."""
        self._create(cur, shard=True, bounds=self._bounds)


def publish_shards(
    cur: db.Cursor,
    schema: str,
    run_id: str,
    entity_kind: str,
    parts: list[tuple[str, Bounds]],
) -> None:
    """Make a sharded run's table of its shards' tables and attach it as the run's partition.

    ``parts`` are (shard table, its range). Every shard table's CHECKs imply its bound and the
    run's, and its primary key becomes the run table's: nothing is scanned or copied, and the
    key (run id, entity id) holds across shards.
    """
    cur.execute(
        f"SELECT {quote_identifier(schema)}.run_table_publish_shards(%s, %s, %s, %s, %s, %s)",
        (
            partition_name(run_id),
            entity_kind,
            run_id,
            [name for name, _ in parts],
            [lower for _, (lower, _) in parts],
            [upper for _, (_, upper) in parts],
        ),
    )


def drop_unpublished(cur: db.Cursor, schema: str, table: str) -> bool:
    """Drop an unpublished run table (a failed run's shard, an orphan); False if it is gone.

    The schema's function refuses anything else: a published run's table, a partition.
    """
    cur.execute(f"SELECT {quote_identifier(schema)}.run_table_drop(%s)", (table,))
    return bool(db.one_value(cur))


def _duplicate_message(exc: psycopg2.errors.UniqueViolation, lineage: LineageColumns) -> str:
    detail = exc.diag.message_detail or ""
    found = re.search(r"=\((.*)\) is duplicated", detail)
    entity = None
    if found and found.group(1).startswith(f"{lineage.run_id}, "):
        entity = found.group(1).removeprefix(f"{lineage.run_id}, ")
    named = f" (e.g. {entity!r})" if entity is not None else ""
    return (
        f"duplicate entity ids in the feature relation{named} for snapshot {lineage.snapshot}: "
        "a run scores each entity once. If the table holds several snapshots, name the "
        "column that tells them apart with SCORER_SNAPSHOT_COLUMN; nothing published"
    )


def write(cur: db.Cursor, statement: str, payloads: Iterable[bytes]) -> None:
    """Send each encoded chunk as it comes, one COPY each, on an open cursor (inside the run's
    transaction). Between chunks no COPY is in progress: psycopg2 holds the connection for a
    COPY's whole length, so a failing run could not cancel it while the writer waits."""
    for payload in payloads:
        cur.copy_expert(statement, io.BytesIO(payload), size=1 << 20)
