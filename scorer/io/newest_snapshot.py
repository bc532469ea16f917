"""The newest snapshot of a feature relation, without reading its whole history.

``max(column)`` is cheap through a btree index on the snapshot column: PostgreSQL reads the
last entry of each index. Without one, on a table partitioned by the snapshot column, the
partitions are read newest-first by their bounds (range: the upper bound; list: the largest
value listed; a DEFAULT or ``MAXVALUE`` partition may hold anything and comes first), and
the walk stops at the first partition whose bound cannot beat the newest value found so
far. Typically it reads only the newest non-empty partition. Anything else (no index, no
partition key on the column) reads every row, and a warning names the index to create.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import structlog

from scorer.postgres import db
from scorer.postgres.identifiers import Relation, quote_any

log = structlog.get_logger("scorer")

_TOKEN = re.compile(r"'((?:[^']|'')*)'|([^\s(),']+)")
_UNBOUNDED = frozenset({"MAXVALUE"})


@dataclass(frozen=True)
class Partition:
    """One partition of the relation: its quoted name, and the largest value its bound allows
    (``None``: unbounded, e.g. the DEFAULT partition)."""

    sql: str
    upper: str | None


def newest(cur: db.Cursor, relation: Relation, column: str, sql_type: str) -> str | None:
    """The largest value of ``column`` in ``relation``, as text; ``None`` when it has none.

    The cursor's session is expected in time zone UTC (timestamptz values as text)."""
    quoted = quote_any(column)
    if not _indexed(cur, relation, column):
        partitions = _partitions(cur, relation, column, sql_type)
        if partitions is not None:
            return _walk(cur, partitions, quoted, sql_type)
        if _is_table(cur, relation):
            log.warning(
                "features.snapshot_scan",
                relation=str(relation),
                snapshot_column=column,
                detail="finding the newest snapshot reads every row: no btree index on the "
                "snapshot column, and the table is not partitioned by it; create one with "
                f"CREATE INDEX ON {relation.sql} ({quoted})",
            )
    cur.execute(f"SELECT max({quoted})::text FROM {relation.sql}")
    found = db.one_value(cur)
    return None if found is None else str(found)


def _is_table(cur: db.Cursor, relation: Relation) -> bool:
    """A table, partitioned table or materialized view (a view's tables are not checked)."""
    cur.execute(
        "SELECT relkind IN ('r', 'p', 'm') FROM pg_class WHERE oid = %s::regclass",
        (relation.sql,),
    )
    return bool(db.one_value(cur))


def _indexed(cur: db.Cursor, relation: Relation, column: str) -> bool:
    """Every table of the relation (each leaf partition) has a valid, whole-table btree index
    that starts with ``column``, so ``max(column)`` reads the end of each index."""
    cur.execute(
        "SELECT count(*) > 0 AND bool_and(EXISTS ("
        "  SELECT 1 FROM pg_index i"
        "  JOIN pg_class ic ON ic.oid = i.indexrelid"
        "  JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'"
        "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
        "  WHERE i.indrelid = leaf.oid AND a.attname = %(column)s AND i.indisvalid"
        "  AND i.indpred IS NULL))"
        " FROM (SELECT relid AS oid FROM pg_partition_tree(%(relation)s::regclass) WHERE isleaf"
        "       UNION SELECT oid FROM pg_class"
        "       WHERE oid = %(relation)s::regclass AND relkind IN ('r', 'm')) AS leaf",
        {"relation": relation.sql, "column": column},
    )
    return bool(db.one_value(cur))


def _partitions(
    cur: db.Cursor, relation: Relation, column: str, sql_type: str
) -> list[Partition] | None:
    """The relation's partitions newest-first, when it is range- or list-partitioned by
    ``column`` alone; else ``None``."""
    cur.execute(
        "SELECT pt.partstrat FROM pg_partitioned_table pt"
        " JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]"
        " WHERE pt.partrelid = %s::regclass AND pt.partnatts = 1 AND pt.partstrat IN ('r', 'l')"
        " AND a.attname = %s",
        (relation.sql, column),
    )
    if cur.fetchone() is None:
        return None
    cur.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname), pg_get_expr(c.relpartbound, c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.inhparent = %s::regclass",
        (relation.sql,),
    )
    names: list[str] = []
    values: list[str | None] = []
    for name, bound in cur.fetchall():
        for value in _uppers(str(bound)):
            names.append(str(name))
            values.append(value)
    cur.execute(
        f"SELECT name, max(value::{sql_type})::text FROM unnest(%s::text[], %s::text[])"
        " AS bound(name, value) GROUP BY name"
        f" ORDER BY max(value::{sql_type}) DESC NULLS FIRST",
        (names, values),
    )
    return [Partition(str(name), upper) for name, upper in cur.fetchall()]


def _uppers(bound: str) -> list[str | None]:
    """The values that bound a partition from above, from ``pg_get_expr`` of its bound
    (``FOR VALUES FROM ('2026-10-01') TO ('2026-11-01')``, ``FOR VALUES IN (1, 2)``,
    ``DEFAULT``); ``None`` for no bound. A list partition of NULL alone has none (it holds
    no snapshot)."""
    tokens = [
        (quoted.replace("''", "'"), True) if quoted or not bare else (bare, False)
        for quoted, bare in _TOKEN.findall(bound)
    ]
    words = [text for text, literal in tokens if not literal]
    if not tokens or words[:1] == ["DEFAULT"]:
        return [None]
    if "TO" in words:  # range: every value is below the upper bound
        upper, literal = tokens[tokens.index(("TO", False)) + 1]
        return [None if upper in _UNBOUNDED and not literal else upper]
    listed = tokens[tokens.index(("IN", False)) + 1 :]
    return [value for value, literal in listed if literal or value != "NULL"]


def _walk(cur: db.Cursor, partitions: list[Partition], quoted: str, sql_type: str) -> str | None:
    """Read partitions newest-first until no later one can hold a newer value."""
    best: str | None = None
    for partition in partitions:
        if best is not None and partition.upper is not None:
            cur.execute(f"SELECT %s::{sql_type} <= %s::{sql_type}", (partition.upper, best))
            if db.one_value(cur):
                break  # the rest are older still
        cur.execute(f"SELECT max({quoted})::text FROM {partition.sql}")
        found = db.one_value(cur)
        if found is not None:
            cur.execute(f"SELECT greatest(%s::{sql_type}, %s::{sql_type})::text", (found, best))
            best = str(db.one_value(cur))
    return best
