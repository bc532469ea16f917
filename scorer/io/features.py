"""Check the feature relation against the model's inputs, then stream it in chunks.

``plan`` reads the catalog once and decides how each column travels (see ``scorer.postgres.wire``):
numbers and booleans as ``float8`` (NULL as NaN, missing), temporal values as ``float8``
epoch microseconds (exact: any timestamp within 285 years of 1970 is an integer below 2**53),
text the model wants as numbers parsed on the server with a flag for what does not parse,
and strings as text in each row's tail. ``to_chunk`` converts the numbers to the dtype the
model's library computes in (``FeaturePlan.dtype``) and rejects, per row and column, a value
the signature's declared type cannot hold. Integer and uuid entity ids are fixed-width; text ids
travel in the tail. With a snapshot column, only the run's snapshot is read, through the
column's index or partitions when the table has them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import psycopg2

from scorer.errors import ConfigError, EmptyRelationError, SchemaMismatchError, StaleSnapshotError
from scorer.io import declared, newest_snapshot, workers
from scorer.postgres import db, wire
from scorer.postgres.identifiers import Relation, quote_any

InputKind = Literal["number", "string", "datetime"]
EntityKind = Literal["bigint", "text", "uuid"]
Precision = type[np.float32] | type[np.float64]
"""The dtype a model's library computes in, and so the dtype its numbers reach it in."""

_NUMBER = "'^[[:space:]]*[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?[[:space:]]*$'"
_INTEGERS = frozenset({"int2", "int4", "int8"})
_TEMPORAL = frozenset({"date", "timestamp", "timestamptz"})
_TEXTS = frozenset({"text", "varchar", "bpchar", "name"})
_NULL_UUID = "'00000000-0000-0000-0000-000000000000'::uuid"


@dataclass(frozen=True)
class ModelInput:
    """One input column the model expects: its exact name, what it needs, what it declared."""

    name: str
    kind: InputKind
    declared: str


@dataclass(frozen=True)
class Column:
    """A column of the feature relation as the catalog describes it."""

    name: str
    sql_type: str  # format_type(), e.g. "numeric(8,2)"
    typname: str
    category: str  # pg_type.typcategory


@dataclass(frozen=True)
class Snapshot:
    """The snapshot a run scores: its label, how it sorts, and the column it filters on."""

    label: str
    order: str
    column: str | None = None


@dataclass(frozen=True)
class FeaturePlan:
    """What to read and how: the COPY statement, its row layout, and where each input lands."""

    relation: Relation
    entity: str
    entity_kind: EntityKind
    inputs: tuple[ModelInput, ...]
    snapshot: Snapshot
    layout: wire.RowLayout
    copy_sql: str
    parsed_flags: tuple[str, ...] = ()  # text columns parsed as numbers, one flag each
    numbers: tuple[str, ...] = ()  # float8 fields, in input order
    strings: tuple[str, ...] = ()  # tail fields after a text id, in input order
    select_sql: str = ""  # the SELECT list of copy_sql
    where: tuple[str, ...] = ()  # copy_sql's conditions (the snapshot; a shard's part)
    entity_sql_type: str = ""  # the entity column's SQL type, e.g. "bigint", "uuid"
    checks: tuple[declared.Check, ...] = ()  # declared types the SQL types do not guarantee
    dtype: Precision = np.float64  # what ``Chunk.numbers`` holds

    @property
    def all_numeric(self) -> bool:
        """Every input is a number: the model can take one matrix."""
        return all(item.kind == "number" for item in self.inputs)


@dataclass
class Chunk:
    """One chunk of usable rows, and why the others were rejected."""

    ids: npt.NDArray[Any]  # int64, V16 (uuid) or S<n> (UTF-8 text)
    numbers: npt.NDArray[np.floating[Any]]  # (rows, len(plan.numbers)) in the plan's dtype;
    # datetimes as epoch microseconds
    strings: dict[str, wire.Texts]  # UTF-8 bytes; the flavor decides what the model gets
    read: int
    rejected_by: Counter[str] = field(default_factory=Counter)
    nulls: dict[str, int] = field(default_factory=dict)  # NULL/NaN per input, rows scored
    empties: dict[str, int] = field(default_factory=dict)  # empty strings per string input

    @property
    def rejected(self) -> int:
        """Rows of this chunk not scored."""
        return sum(self.rejected_by.values())


def describe(conn: db.Connection, relation: Relation) -> dict[str, Column]:
    """The relation's columns by exact name; ``SchemaMismatchError`` if it does not exist."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (relation.sql,))
        row = cur.fetchone()
        if row is None or row[0] is None:
            raise SchemaMismatchError(f"feature relation {relation} does not exist")
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
            (relation.sql,),
        )
        return {name: Column(name, sql_type, typname, cat) for name, sql_type, typname, cat in cur}


@dataclass(frozen=True)
class Source:
    """Where a run's features come from: the relation, its id column and the snapshot asked."""

    relation: Relation
    entity: str
    snapshot_column: str | None = None
    snapshot: str | None = None
    max_age: timedelta | None = None  # SCORER_MAX_SNAPSHOT_AGE


def plan(
    conn: db.Connection,
    source: Source,
    inputs: tuple[ModelInput, ...],
    dtype: Precision = np.float64,
) -> FeaturePlan:
    """Check the source relation against the model's inputs and pick the run's snapshot;
    numbers will reach the model as ``dtype``, the one its library computes in."""
    relation, entity, snapshot_column = source.relation, source.entity, source.snapshot_column
    columns = describe(conn, relation)
    problems: list[str] = []
    _entity_kind(columns.get(entity), entity, problems)
    missing = [item.name for item in inputs if item.name not in columns]
    if missing:
        problems.append(f"missing signature columns: {', '.join(missing)}")
    for item in inputs:
        if item.name in columns and not _fits(columns[item.name], item.kind):
            column = columns[item.name]
            problems.append(
                f"column {column.name!r} is {column.sql_type}, which cannot become the "
                f"{item.declared} the model's signature declares"
            )
    if snapshot_column is not None:
        _check_snapshot_column(columns.get(snapshot_column), snapshot_column, problems)
    if problems:
        raise SchemaMismatchError(f"feature relation {relation}: " + "; ".join(problems))
    label = source.snapshot or ""
    chosen = (
        _pick_snapshot(conn, relation, columns[snapshot_column], source.snapshot)
        if snapshot_column is not None
        else Snapshot(label, label)
    )
    if source.max_age is not None:
        _check_fresh(conn, source, columns.get(snapshot_column or ""), chosen, source.max_age)
    return replace(_build(conn, source, inputs, columns, chosen), dtype=dtype)


def _entity_kind(column: Column | None, name: str, problems: list[str]) -> EntityKind | None:
    if column is None:
        problems.append(f"entity column {name!r} is missing")
        return None
    if column.typname in _INTEGERS:
        return "bigint"
    if column.typname == "uuid":
        return "uuid"
    if column.typname in _TEXTS:
        return "text"
    problems.append(
        f"entity column {name!r} is {column.sql_type}; ids must be an integer, text or uuid"
    )
    return None


def _fits(column: Column, kind: InputKind) -> bool:
    if kind == "number":
        return column.category in "NBS"
    if kind == "datetime":
        return column.typname in ("date", "timestamp", "timestamptz")
    return column.category in "SNBDEU"  # anything with a plain text form


def _check_snapshot_column(column: Column | None, name: str, problems: list[str]) -> None:
    if column is None:
        problems.append(f"snapshot column {name!r} (SCORER_SNAPSHOT_COLUMN) is missing")
    elif not (column.category in "DS" or column.typname in _INTEGERS):
        problems.append(
            f"snapshot column {name!r} is {column.sql_type}; it must be a date, timestamp, "
            "text or integer column"
        )


def _pick_snapshot(
    conn: db.Connection, relation: Relation, column: Column, wanted: str | None
) -> Snapshot:
    """The requested snapshot in the column's own text form, or the newest in the table
    (through an index or the partition bounds where it has them: ``scorer.io.newest_snapshot``)."""
    with conn.cursor() as cur:
        cur.execute("SET LOCAL TIME ZONE 'UTC'")  # timestamptz snapshots render the same everywhere
        if wanted is None:
            label = newest_snapshot.newest(cur, relation, column.name, column.sql_type)
        else:
            try:
                cur.execute(f"SELECT (%s::{column.sql_type})::text", (wanted,))
            except psycopg2.DataError:
                raise SchemaMismatchError(
                    f"SCORER_SNAPSHOT={wanted!r} is not a valid {column.sql_type} for snapshot "
                    f"column {column.name!r}"
                ) from None
            label = db.one_value(cur)
    if label is None:
        raise EmptyRelationError(
            f"feature relation {relation} has no rows with a snapshot in {column.name!r}; "
            "nothing to score, the published predictions stay as they are"
        )
    order = f"{int(label) + 2**63:020d}" if column.typname in _INTEGERS else str(label)
    return Snapshot(str(label), order, column.name)


def _check_fresh(
    conn: db.Connection,
    source: Source,
    column: Column | None,
    snapshot: Snapshot,
    max_age: timedelta,
) -> None:
    """Refuse a snapshot the run picked (the newest) older than ``max_age``.

    The age is the server's ``now()`` minus the snapshot as a UTC instant: a ``date`` from its
    midnight UTC, a ``timestamp`` read as UTC, a ``timestamptz`` as it is. Text and integer
    snapshots carry no time, so the limit cannot apply to them: ``ConfigError``. A snapshot
    asked for by name (``SCORER_SNAPSHOT``, a backfill, a shard joining its run) is scored
    whatever its age.
    """
    if column is None or column.typname not in _TEMPORAL:
        what = (
            "no SCORER_SNAPSHOT_COLUMN is set"
            if column is None
            else f"snapshot column {column.name!r} is {column.sql_type}"
        )
        raise ConfigError(
            "SCORER_MAX_SNAPSHOT_AGE needs a date or timestamp snapshot column to tell a"
            f" snapshot's age, and {what}: unset it, or name a date or timestamp column (a view"
            " can cast one)"
        )
    if source.snapshot is not None:
        return
    with conn.cursor() as cur:
        cur.execute("SET LOCAL TIME ZONE 'UTC'")  # a date or timestamp is read as UTC
        cur.execute(
            f"SELECT extract(epoch FROM now() - (%s::{column.sql_type})::timestamptz)::float8",
            (snapshot.label,),
        )
        age = timedelta(seconds=float(db.one_value(cur)))
    if age > max_age:
        raise StaleSnapshotError(
            f"the newest snapshot of {source.relation}, {snapshot.label}, is"
            f" {age.total_seconds() / 3600:.1f} h old, older than SCORER_MAX_SNAPSHOT_AGE"
            f" ({max_age.total_seconds() / 3600:g} h); nothing published. The upstream load is"
            " late or failed: check it, then run again"
        )


def _build(
    conn: db.Connection,
    source: Source,
    inputs: tuple[ModelInput, ...],
    columns: dict[str, Column],
    snapshot: Snapshot,
) -> FeaturePlan:
    """The COPY statement: fixed-width fields first, then the text tail."""
    relation, entity = source.relation, source.entity
    entity_kind = _entity_kind(columns[entity], entity, [])
    assert entity_kind is not None  # checked by plan()
    id_sql = quote_any(entity)
    fixed: list[tuple[str, str]] = []
    select: list[str] = []
    tail: list[str] = []
    if entity_kind == "text":
        tail.append(f"{id_sql}::text")
    numbers = tuple(item.name for item in inputs if item.kind != "string")
    strings = tuple(item.name for item in inputs if item.kind == "string")
    tail += [f"{quote_any(name)}::text" for name in strings]
    if tail:
        lengths = " + ".join(f"coalesce(octet_length({sql}), 0)" for sql in tail)
        fixed.append(("tail", ">i4"))
        select.append(f"({lengths})::int4")
    if entity_kind == "bigint":
        fixed.append(("id", ">i8"))
        select.append(f"coalesce({id_sql}, 0)::int8")
    elif entity_kind == "uuid":
        fixed.append(("id", "V16"))
        select.append(f"coalesce({id_sql}, {_NULL_UUID})")
    fixed.append(("null_id", "u1"))
    select.append(f"{id_sql} IS NULL")
    parsed = tuple(name for name in numbers if columns[name].category == "S")
    for index, name in enumerate(parsed):
        column = quote_any(name)
        fixed.append((f"unparsed{index}", "u1"))
        select.append(f"coalesce({column} !~ {_NUMBER}, false)")
    for index, name in enumerate(numbers):
        fixed.append((f"f{index}", ">f8"))
        select.append(_as_float8(columns[name]))
    by_name = {item.name: item for item in inputs}
    checks = tuple(
        check
        for index, name in enumerate(numbers)
        for check in declared.checks(index, name, by_name[name].declared, columns[name].typname)
    )
    where: tuple[str, ...] = ()
    if snapshot.column is not None:
        literal = _literal(conn, snapshot.label, columns[snapshot.column].sql_type)
        where = (f"{quote_any(snapshot.column)} = {literal}",)
    sql = ", ".join([*select, *tail])
    layout = wire.RowLayout(tuple(fixed), len(tail))
    return FeaturePlan(
        relation,
        entity,
        entity_kind,
        inputs,
        snapshot,
        layout,
        _copy_sql(sql, relation, where),
        parsed,
        numbers,
        strings,
        sql,
        where,
        columns[entity].sql_type,
        checks,
    )


def _copy_sql(select: str, relation: Relation, where: tuple[str, ...]) -> str:
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return f"COPY (SELECT {select} FROM {relation.sql}{condition}) TO STDOUT (FORMAT binary)"


def restrict(plan: FeaturePlan, condition: str) -> FeaturePlan:
    """The same plan reading only the rows that also meet ``condition`` (a shard's part), on
    the server: the condition is part of the COPY query."""
    where = (*plan.where, f"({condition})")
    return replace(plan, where=where, copy_sql=_copy_sql(plan.select_sql, plan.relation, where))


def _as_float8(column: Column) -> str:
    name = quote_any(column.name)
    if column.category == "S":
        return f"CASE WHEN {name} ~ {_NUMBER} THEN {name}::float8 ELSE 'NaN' END"
    if column.category == "B":
        return f"coalesce({name}::int::float8, 'NaN')"
    if column.category == "D":  # epoch microseconds: an integer below 2**53, so exact
        return f"coalesce((extract(epoch FROM {name}) * 1000000)::float8, 'NaN')"
    return f"coalesce({name}::float8, 'NaN')"


def _literal(conn: db.Connection, value: str, sql_type: str) -> str:
    with conn.cursor() as cur:
        return cur.mogrify(f"%s::{sql_type}", (value,)).decode()


def to_chunk(rows: wire.Rows, plan: FeaturePlan, evidence: bool = True) -> Chunk:
    """Usable rows as model inputs; rows with a NULL id or an unusable number are counted.

    With ``evidence`` (always, in a run) it also counts the quality gate's NULL and empty
    values per input; the benchmark turns it off to measure what the counting costs.
    """
    fixed = rows.fixed
    count = int(fixed.size)
    numbers = np.empty((count, len(plan.numbers)), dtype=plan.dtype)
    reasons: list[tuple[str, npt.NDArray[np.bool_]]] = [
        (f"{plan.entity}: id is NULL", fixed["null_id"].astype(bool))
    ]
    for index, name in enumerate(plan.parsed_flags):
        reasons.append((f"{name}: not a number", fixed[f"unparsed{index}"].astype(bool)))
    if numbers.size:
        # The numbers sit at a fixed stride inside each row (4-byte length, 8-byte value), so
        # one strided view converts all of them in a single call (about 6x cheaper than per
        # field).
        fields = fixed.dtype.fields
        assert fields is not None  # a structured dtype
        values = np.ndarray(
            numbers.shape,
            dtype=">f8",
            buffer=fixed,
            offset=fields["f0"][1],
            strides=(fixed.dtype.itemsize, 12),
        )
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, and inf is rejected
            numbers[...] = values
        infinite = np.isinf(numbers)
        beyond = "infinite or beyond float32" if plan.dtype is np.float32 else "infinite"
        for index, name in enumerate(plan.numbers):
            reasons.append((f"{name}: {beyond}", infinite[:, index]))
        for check in plan.checks:  # on the table's float8 values, before any rounding
            reasons.append((check.reason, check.refused(values[:, check.position])))
    bad = np.zeros(count, dtype=bool)
    rejected_by: Counter[str] = Counter()
    for reason, mask in reasons:
        fresh = mask & ~bad  # each rejected row counts once, for its first reason
        if fresh.any():
            rejected_by[reason] = int(fresh.sum())
            bad |= fresh
    tail = list(rows.tail)
    ids: npt.NDArray[Any] = tail.pop(0).values if plan.entity_kind == "text" else fixed["id"]
    if plan.entity_kind == "bigint":
        ids = ids.astype(np.int64)
    keep = ~bad
    strings = dict(zip(plan.strings, tail, strict=True))
    kept = numbers[keep] if rejected_by else numbers
    nulls, empties = _missing(plan, kept, tail, keep) if evidence else ({}, {})
    if rejected_by:
        ids, numbers = ids[keep], kept
        strings = {name: texts.kept(keep) for name, texts in strings.items()}
    return Chunk(ids, numbers, strings, count, rejected_by, nulls, empties)


def _missing(
    plan: FeaturePlan,
    kept: npt.NDArray[np.floating[Any]],
    tail: list[wire.Texts],
    keep: npt.NDArray[np.bool_],
) -> tuple[dict[str, int], dict[str, int]]:
    """NULL/NaN per input and empty strings per string input, over the rows kept."""
    nulls = dict(zip(plan.numbers, np.isnan(kept).sum(axis=0).tolist(), strict=True))
    empties: dict[str, int] = {}
    for name, texts in zip(plan.strings, tail, strict=True):
        nulls[name] = int(np.count_nonzero(texts.null & keep))
        empties[name] = int(np.count_nonzero((texts.values == b"") & ~texts.null & keep))
    return nulls, empties


def stream(
    conn: db.Connection, plan: FeaturePlan, chunk_rows: int, depth: int = 2
) -> Iterator[Chunk]:
    """Yield chunks while a background thread reads the next ones (bounded read-ahead).

    Closing the iterator early cancels the COPY on the server.
    """

    def read(put: Callable[[Chunk], None]) -> None:
        reader = wire.CopyReader(plan.layout, chunk_rows, lambda rows: put(to_chunk(rows, plan)))
        with db.transaction(conn), conn.cursor() as cur:
            cur.copy_expert(plan.copy_sql, reader)
        reader.close()

    yield from workers.produced(read, conn.cancel, depth, name="scorer-reader")


def snapshots(
    conn: db.Connection,
    source: Source,
    between: tuple[str, str] | None = None,
    listed: Sequence[str] = (),
) -> list[str]:
    """Snapshot labels of ``source``: those in the table ``between`` two values, or ``listed``.

    Labels are the snapshot column's own text form, as runs record them.
    """
    if source.snapshot_column is None:
        raise ConfigError("a backfill needs SCORER_SNAPSHOT_COLUMN: the column naming snapshots")
    problems: list[str] = []
    column = describe(conn, source.relation).get(source.snapshot_column)
    _check_snapshot_column(column, source.snapshot_column, problems)
    if problems or column is None:
        raise SchemaMismatchError(f"feature relation {source.relation}: " + "; ".join(problems))
    quoted, kind = quote_any(column.name), column.sql_type
    with conn.cursor() as cur:
        cur.execute("SET LOCAL TIME ZONE 'UTC'")
        try:
            if between is not None:
                cur.execute(
                    f"SELECT value::text FROM (SELECT DISTINCT {quoted} AS value"
                    f" FROM {source.relation.sql}"
                    f" WHERE {quoted} BETWEEN %s::{kind} AND %s::{kind}) AS found ORDER BY value",
                    between,
                )
                return [str(row[0]) for row in cur.fetchall()]
            cur.execute(
                f"SELECT (value::{kind})::text FROM unnest(%s::text[]) AS value", (list(listed),)
            )
            return [str(row[0]) for row in cur.fetchall()]
        except psycopg2.DataError:
            raise ConfigError(
                f"a backfill bound or snapshot is not a valid {kind} (snapshot column "
                f"{column.name!r})"
            ) from None
