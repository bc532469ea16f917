"""Each stage alone, case after case, in one child process: ``python -m benchmarks.stages ...``.

Prints JSON: per case, the stages' samples and the plan of the scorer's feature query. The model is
the case's registered ``champion``, loaded as the scorer loads it; the rows are the ones the
scorer's run scores (the newest snapshot where the table has several).

- ``read-raw``: ``COPY (SELECT id, the model's columns ... [WHERE snapshot]) TO STDOUT
  (FORMAT binary)`` to a sink that drops the bytes: what moving the rows costs at least;
- ``read``: the scorer's own feature COPY (its projection: NULL flags, casts, the tail
  length) to the same sink;
- ``read-parse``: the scorer's reader, ``features.stream``: COPY + parse into chunks
  (numbers as float32, strings decoded), its read-ahead thread included;
- ``parse``: the parse alone (``features.to_chunk`` on rows read beforehand), with the
  quality gate's evidence counted, as in a run; ``parse-no-evidence``: the same without it;
- ``predict-model``: the model library's own predict on the same rows, its input built
  beforehand and not timed: ``Booster.inplace_predict`` on the float32 matrix (numeric) or
  on a DataFrame with categoricals (telco xgboost), ``Pipeline.predict_proba`` on a
  DataFrame with string columns (telco sklearn);
- ``predict-scorer``: the scorer's ``LoadedModel.predict(chunk, plan)`` on the same chunks:
  the library call plus building its input from a chunk and checking the scores;
- ``write-narrow``: binary COPY of narrow rows (id, score, label; ``wire.encode_predictions``)
  into an unindexed table;
- ``write-scorer``: the scorer's writer (``sink.RunPartition``: lineage as column defaults,
  narrow rows, primary key built after the load, attached to the id type's parent).

Client CPU is this process's (all threads); server CPU is the cluster's process tree.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2

from benchmarks.cluster import server_cpu
from benchmarks.fixtures import ALIAS, CASES, CATEGORIES, Case
from scorer.io import cpus, features, sink
from scorer.model import flavors
from scorer.postgres import wire
from scorer.postgres.identifiers import Relation, quote_any

CHUNK = 50_000
STAGES = (
    "read-raw",
    "read",
    "read-parse",
    "parse",
    "parse-no-evidence",
    "predict-model",
    "predict-scorer",
    "write-narrow",
    "write-scorer",
)


class _Discard:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


@dataclass
class Stage:
    """A timed ``run`` and an untimed ``reset`` after it (e.g. dropping what it wrote)."""

    run: Callable[[], None]
    reset: Callable[[], None] = field(default=lambda: None)


class Setup:
    """One case's model, feature plan and (read once, on demand) the rows it scores."""

    def __init__(self, url: str, tracking_uri: str, case: Case) -> None:
        import mlflow  # noqa: PLC0415 - the stages child is the only one that loads both

        self.url = url
        self.case = case
        self.conn = psycopg2.connect(url)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.path = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{case.model_name}@{ALIAS}",
                dst_path=tempfile.mkdtemp(prefix="scorer-bench-model-"),
            )
        )
        self.loaded = flavors.load(self.path, "probability", None, cpus.available())
        source = features.Source(Relation.parse(case.table), case.entity, case.snapshot_column)
        self.plan = features.plan(self.conn, source, self.loaded.inputs, self.loaded.dtype)
        self.conn.rollback()
        self._chunks: list[features.Chunk] | None = None
        self._rows: list[wire.Rows] | None = None

    @property
    def chunks(self) -> list[features.Chunk]:
        """Every chunk the run scores, read with the scorer's reader (not timed)."""
        if self._chunks is None:
            self._chunks = list(features.stream(self.conn, self.plan, CHUNK))
        return self._chunks

    @property
    def rows(self) -> list[wire.Rows]:
        """The scored rows as the wire delivers them, before the parse (not timed)."""
        if self._rows is None:
            found: list[wire.Rows] = []
            reader = wire.CopyReader(self.plan.layout, CHUNK, found.append)
            with self.conn.cursor() as cur:
                cur.copy_expert(self.plan.copy_sql, reader)
            reader.close()
            self.conn.rollback()
            self._rows = found
        return self._rows

    def scores(self) -> list[Any]:
        rng = np.random.default_rng(3)
        return [rng.random(chunk.ids.size) for chunk in self.chunks]

    def raw_sql(self) -> str:
        """Plain COPY of the id and the model's columns of the scored rows, no projection."""
        plan = self.plan
        columns = ", ".join(quote_any(name) for name in (plan.entity, *self.loaded.feature_names))
        where = ""
        if plan.snapshot.column is not None:
            with self.conn.cursor() as cur:
                literal = cur.mogrify("%s", (plan.snapshot.label,)).decode()
            where = f" WHERE {quote_any(plan.snapshot.column)} = {literal}"
        self.conn.rollback()
        return f"COPY (SELECT {columns} FROM {plan.relation.sql}{where}) TO STDOUT (FORMAT binary)"

    def explain(self) -> str:
        """The plan of the scorer's feature query (index or sequential scan)."""
        query = self.plan.copy_sql.removeprefix("COPY (").rsplit(") TO STDOUT", 1)[0]
        with self.conn.cursor() as cur:
            cur.execute(f"EXPLAIN {query}")
            lines = [row[0] for row in cur.fetchall()]
        self.conn.rollback()
        return "; ".join(line.strip() for line in lines)


def _copy_out(setup: Setup, statement: str) -> Stage:
    def run() -> None:
        with setup.conn.cursor() as cur:
            cur.copy_expert(statement, _Discard())
        setup.conn.rollback()

    return Stage(run)


def read_raw(setup: Setup) -> Stage:
    return _copy_out(setup, setup.raw_sql())


def read(setup: Setup) -> Stage:
    return _copy_out(setup, setup.plan.copy_sql)


def read_parse(setup: Setup) -> Stage:
    def run() -> None:
        for _chunk in features.stream(setup.conn, setup.plan, CHUNK):
            pass

    return Stage(run)


def _parse(evidence: bool) -> Callable[[Setup], Stage]:
    def factory(setup: Setup) -> Stage:
        rows, plan = setup.rows, setup.plan

        def run() -> None:
            for chunk_rows in rows:
                features.to_chunk(chunk_rows, plan, evidence=evidence)

        return Stage(run)

    return factory


def _native(setup: Setup) -> Any:
    """The model object of its own library, as a user of that library would load it."""
    if setup.loaded.flavor == "xgboost":
        import mlflow.xgboost  # noqa: PLC0415

        booster = mlflow.xgboost.load_model(str(setup.path))
        booster.set_param({"nthread": cpus.available()})
        return booster
    import mlflow.sklearn  # noqa: PLC0415

    return mlflow.sklearn.load_model(str(setup.path))


def model_input(chunk: features.Chunk, plan: features.FeaturePlan, categories: bool) -> Any:
    """What the model's library takes: the matrix in its dtype, else a DataFrame in input order."""
    if plan.all_numeric:
        return chunk.numbers
    import pandas as pd  # noqa: PLC0415

    numbers = {name: index for index, name in enumerate(plan.numbers)}
    columns: dict[str, Any] = {}
    for item in plan.inputs:
        if item.kind == "string":
            values = flavors.python_strings(chunk.strings[item.name])
            known = CATEGORIES.get(item.name)
            columns[item.name] = pd.Categorical(values, categories=known) if categories else values
        else:
            column = chunk.numbers[:, numbers[item.name]].astype(np.float64, copy=False)
            columns[item.name] = column.astype(np.int64) if item.declared == "long" else column
    return pd.DataFrame(columns)


def predict_model(setup: Setup) -> Stage:
    model = _native(setup)
    xgboost = setup.loaded.flavor == "xgboost"
    inputs = [model_input(chunk, setup.plan, xgboost) for chunk in setup.chunks]

    def run() -> None:
        for data in inputs:
            if xgboost:
                model.inplace_predict(data, validate_features=False)
            else:
                model.predict_proba(data)

    return Stage(run)


def predict_scorer(setup: Setup) -> Stage:
    chunks, plan, predict = setup.chunks, setup.plan, setup.loaded.predict

    def run() -> None:
        for chunk in chunks:
            predict(chunk, plan)

    return Stage(run)


_ID_TYPES = {"bigint": "bigint", "text": "text", "uuid": "uuid"}


def write_narrow(setup: Setup) -> Stage:
    chunks, scores, conn = setup.chunks, setup.scores(), setup.conn
    id_type = _ID_TYPES[setup.plan.entity_kind]
    statement = "COPY bench.narrow (entity_id, score, label) FROM STDIN (FORMAT binary)"

    def reset() -> None:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench.narrow")
            cur.execute(
                f"CREATE TABLE bench.narrow (entity_id {id_type}, score float8, label int2)"
            )
        conn.commit()

    def run() -> None:
        with conn.cursor() as cur:
            for chunk, values in zip(chunks, scores, strict=True):
                labels = (values >= 0.5).astype(np.int16)
                payload = wire.encode_predictions(chunk.ids, values, labels)
                cur.copy_expert(statement, io.BytesIO(payload), size=1 << 20)
        conn.commit()

    reset()
    return Stage(run, reset)


def bench_lineage(run_id: str) -> sink.LineageColumns:
    """The lineage of a benchmark's run ``run_id``: model ``bench`` v1, one snapshot, now."""
    return sink.LineageColumns(
        run_id=run_id,
        model_name="bench",
        model_version=1,
        snapshot="2025-01-01",
        scored_at=datetime.now(UTC),
    )


def write_scorer(setup: Setup) -> Stage:
    chunks, scores, conn = setup.chunks, setup.scores(), setup.conn
    counter = iter(range(1_000_000))
    written: list[str] = []

    def run() -> None:
        lineage = bench_lineage(f"run-20250101T000000Z-bench{next(counter):02d}")
        partition = sink.RunPartition("scoring", lineage, setup.plan.entity_kind, labels=True)
        with conn.cursor() as cur:
            partition.create(cur)
            payloads = (
                wire.encode_predictions(chunk.ids, values, (values >= 0.5).astype(np.int16))
                for chunk, values in zip(chunks, scores, strict=True)
            )
            sink.write(cur, partition.copy_statement, payloads)
            partition.attach(cur)
        conn.commit()
        written.append(partition.table)

    def reset() -> None:  # keep the database the size of one run
        with conn.cursor() as cur:
            while written:
                cur.execute(f"DROP TABLE {written.pop()}")
        conn.commit()

    return Stage(run, reset)


_FACTORIES: dict[str, Callable[[Setup], Stage]] = {
    "read-raw": read_raw,
    "read": read,
    "read-parse": read_parse,
    "parse": _parse(evidence=True),
    "parse-no-evidence": _parse(evidence=False),
    "predict-model": predict_model,
    "predict-scorer": predict_scorer,
    "write-narrow": write_narrow,
    "write-scorer": write_scorer,
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(setup: Setup, rows: int, repeat: int, names: list[str], postmaster: int) -> Any:
    """The stages of one case, interleaved, ``repeat`` times."""
    if (read := sum(chunk.read for chunk in setup.chunks)) != rows:
        raise RuntimeError(f"{setup.case.name}: the scored rows are {read}, not {rows}")
    runners = {name: _FACTORIES[name](setup) for name in names}
    results: list[dict[str, Any]] = []
    for attempt in range(repeat):
        for name, stage in runners.items():  # interleaved, so drift hits every stage alike
            server, client, wall = server_cpu(postmaster), _cpu(), time.perf_counter()
            stage.run()
            wall, client = time.perf_counter() - wall, _cpu() - client
            time.sleep(0.2)  # let the postmaster reap and account finished work
            server = server_cpu(postmaster) - server
            stage.reset()
            results.append(
                {
                    "stage": name,
                    "attempt": attempt,
                    "rows": rows,
                    "wall": wall,
                    "client_cpu": client,
                    "server_cpu": server,
                }
            )
    return {"stages": results, "explain": setup.explain()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages")
    parser.add_argument("--url", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--case", nargs="+", required=True, choices=sorted(CASES))
    parser.add_argument("--rows", type=int, required=True, help="rows the run scores")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postmaster", type=int, required=True)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    args = parser.parse_args(argv)
    results = {}
    for name in args.case:  # one process: the imports are paid once
        setup = Setup(args.url, args.tracking_uri, CASES[name])
        results[name] = measure(setup, args.rows, args.repeat, args.stages, args.postmaster)
        setup.conn.close()
        del setup  # the next case's rows replace this one's
        gc.collect()
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
