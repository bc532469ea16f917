"""Each stage alone, in one child process: ``python -m benchmarks.stages ...`` prints JSON.

- ``read``: the scorer's feature COPY (binary, fixed width) to a sink that drops the bytes;
- ``read-raw``: plain ``COPY table TO STDOUT (FORMAT binary)``, what the SQL projection costs;
- ``read-parse``: the scorer's reader (``features.stream``: COPY + numpy parse into chunks);
- ``predict``: native ``Booster.inplace_predict`` on float32 chunks, one thread per core;
- ``write-narrow``: binary COPY of narrow rows (entity, score, label) into an unindexed table;
- ``write-scorer``: the scorer's writer (``sink``: a run partition with the lineage as
  defaults, narrow rows, primary key built after the load, attached to ``predictions``).

Client CPU is this process's (all threads); server CPU is the cluster's process tree.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg2

from benchmarks.cluster import server_cpu
from benchmarks.fixtures import ENTITY, FEATURES, TABLE
from scorer import features, sink
from scorer.identifiers import Relation

CHUNK = 50_000
STAGES = (
    "read",
    "read-raw",
    "read-parse",
    "predict",
    "write-narrow",
    "write-scorer",
)
_COPY_HEADER = features.COPY_SIGNATURE + bytes(8)
_NARROW = np.dtype(
    [
        ("count", ">i2"),
        ("id_len", ">i4"),
        ("id", ">i8"),
        ("score_len", ">i4"),
        ("score", ">f8"),
        ("label_len", ">i4"),
        ("label", ">i2"),
    ]
)


class _Discard:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def _chunks(rows: int) -> list[tuple[int, int]]:
    return [(start, min(CHUNK, rows - start)) for start in range(0, rows, CHUNK)]


def read(url: str, _rows: int, _model: str) -> Callable[[], None]:
    conn = psycopg2.connect(url)
    plan = features.plan(conn, Relation.parse(TABLE), ENTITY, FEATURES)

    def run() -> None:
        with conn.cursor() as cur:
            cur.copy_expert(plan.copy_sql, _Discard())
        conn.rollback()

    return run


def read_raw(url: str, _rows: int, _model: str) -> Callable[[], None]:
    conn = psycopg2.connect(url)

    def run() -> None:
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY {TABLE} TO STDOUT (FORMAT binary)", _Discard())
        conn.rollback()

    return run


def read_parse(url: str, _rows: int, _model: str) -> Callable[[], None]:
    conn = psycopg2.connect(url)
    plan = features.plan(conn, Relation.parse(TABLE), ENTITY, FEATURES)

    def run() -> None:
        for _chunk in features.stream(conn, plan, CHUNK):
            pass

    return run


def predict(_url: str, rows: int, model: str) -> Callable[[], None]:
    import xgboost  # noqa: PLC0415

    booster = xgboost.Booster()
    booster.load_model(model)
    booster.set_param({"nthread": os.cpu_count() or 1})
    x = np.random.default_rng(1).random((CHUNK, len(FEATURES)), dtype=np.float32)

    def run() -> None:
        for _start, size in _chunks(rows):
            booster.inplace_predict(x[:size], validate_features=False)

    return run


def write_narrow(url: str, rows: int, _model: str) -> Callable[[], None]:
    conn = psycopg2.connect(url)
    rng = np.random.default_rng(2)
    statement = "COPY bench.narrow (entity_id, score, label) FROM STDIN (FORMAT binary)"

    def run() -> None:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench.narrow")
            cur.execute("CREATE TABLE bench.narrow (entity_id bigint, score float8, label int2)")
        conn.commit()
        with conn.cursor() as cur:
            for start, size in _chunks(rows):
                out = np.zeros(size, dtype=_NARROW)
                out["count"], out["id_len"], out["score_len"], out["label_len"] = 3, 8, 8, 2
                out["id"] = np.arange(start + 1, start + size + 1)
                out["score"] = rng.random(size)
                out["label"] = out["score"] >= 0.5
                payload = b"".join((_COPY_HEADER, out.tobytes(), b"\xff\xff"))
                cur.copy_expert(statement, io.BytesIO(payload), size=1 << 20)
        conn.commit()

    return run


def write_scorer(url: str, rows: int, _model: str) -> Callable[[], None]:
    conn = psycopg2.connect(url)
    rng = np.random.default_rng(3)
    counter = iter(range(1_000_000))

    def run() -> None:
        lineage = sink.Lineage(
            run_id=f"run-20250101T000000Z-bench{next(counter):02d}",
            model_name="bench",
            model_version=1,
            snapshot="2025-01-01",
            scored_at=datetime.now(UTC),
        )
        partition = sink.RunPartition("scoring", lineage)
        with conn.cursor() as cur:
            partition.create(cur)
            for start, size in _chunks(rows):
                scores = rng.random(size)
                ids = np.arange(start + 1, start + size + 1, dtype=np.int64)
                labels = (scores >= 0.5).astype(np.int16)
                sink.write(cur, partition.copy_statement, sink.encode(ids, scores, labels))
            partition.attach(cur)
        conn.commit()

    return run


_FACTORIES: dict[str, Callable[[str, int, str], Callable[[], None]]] = {
    "read": read,
    "read-raw": read_raw,
    "read-parse": read_parse,
    "predict": predict,
    "write-narrow": write_narrow,
    "write-scorer": write_scorer,
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stages")
    parser.add_argument("--url", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postmaster", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    runners = {name: _FACTORIES[name](args.url, args.rows, args.model) for name in args.stages}
    for attempt in range(args.repeat):
        for name, runner in runners.items():  # interleaved, so drift hits every stage alike
            server, client, wall = server_cpu(args.postmaster), _cpu(), time.perf_counter()
            runner()
            wall, client = time.perf_counter() - wall, _cpu() - client
            time.sleep(0.2)  # let the postmaster reap and account finished work
            server = server_cpu(args.postmaster) - server
            results.append(
                {
                    "stage": name,
                    "attempt": attempt,
                    "rows": args.rows,
                    "wall": wall,
                    "client_cpu": client,
                    "server_cpu": server,
                }
            )
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
