"""One sitting's harness: a throwaway cluster, a sqlite registry, the cases' tables and models,
and the scorer's runs (single, sharded, ``check``), the naive pipeline's and the stages' as
measured child processes."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from benchmarks import fixtures
from benchmarks.children import REPO, child_env, run_child, run_children
from benchmarks.cluster import Cluster
from benchmarks.fixtures import NUMERIC, Case
from benchmarks.progress import progress
from benchmarks.types import Sample, StageRow
from scorer.io import cpus

BEFORE_SCHEMA = "scoring_before"


def shard_envs(env: dict[str, str], shards: int) -> list[dict[str, str]]:
    """Each shard's settings of one run, as the chart renders them for pods that each request
    an equal share of this machine's CPUs (their predict threads: that share, rounded up,
    unless ``env`` sets them); one shard is a plain run."""
    if shards == 1:
        return [env]
    threads = str(math.ceil(cpus.available() / shards))
    return [
        {
            "SCORER_PREDICT_THREADS": threads,
            **env,
            "SCORER_SHARDS": str(shards),
            "SCORER_SHARD_INDEX": str(index),
        }
        for index in range(shards)
    ]


class Bench:
    """One sitting: a cluster, a registry, the tables of the cases measured."""

    def __init__(self, cluster: Cluster, workdir: Path, before: Path | None = None) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.before = before
        self.db_url = cluster.url.rsplit("/", 1)[0] + "/bench"
        self.tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        self.model_file = Path()

    def setup(self, rows: int, cases: Sequence[Case], train_rows: int) -> None:
        """The bench database with the cases' tables (N and N/4 rows), their models, the schema."""
        with closing(psycopg2.connect(self.cluster.url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE bench")
        small = max(rows // 4, 1)
        shapes = {case.shape for case in cases}
        started = time.perf_counter()
        if "numeric" in shapes:
            fixtures.create_features(self.db_url, rows)
            fixtures.create_features(self.db_url, small, NUMERIC.quarter)
        if "telco" in shapes:
            fixtures.create_telco(self.db_url, rows)
            fixtures.create_telco(self.db_url, small, fixtures.TELCO_TABLE + "_quarter")
        self.say(f"tables ({', '.join(sorted(shapes))}) for {rows:,} rows scored", started)
        registered: dict[str, Callable[[], Path | None]] = {
            "numeric": lambda: fixtures.register_model(self.tracking_uri, self.workdir, train_rows),
            "telco-xgboost": lambda: fixtures.register_telco_xgboost(self.tracking_uri, train_rows),
            "telco-sklearn": lambda: fixtures.register_telco_sklearn(self.tracking_uri, train_rows),
        }
        for case in cases:
            started = time.perf_counter()
            made = registered[case.name]()
            if isinstance(made, Path):
                self.model_file = made
            self.say(f"model {case.model_name} trained and registered", started)
        self._migrate(REPO, "scoring")
        if self.before is not None:
            self._migrate(self.before, BEFORE_SCHEMA)

    @staticmethod
    def say(what: str, started: float) -> None:
        progress(f"{what} in {time.perf_counter() - started:.1f}s")

    def _migrate(self, tree: Path, schema: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "scorer", "migrate"],
            env=child_env(
                {"SCORER_DATABASE_URL": self.db_url, "SCORER_TARGET_SCHEMA": schema}, tree
            ),
            check=True,
            capture_output=True,
            cwd=tree,
        )

    def sql(self, *statements: str) -> None:
        with closing(psycopg2.connect(self.db_url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)

    def scorer_env(
        self, case: Case, run_id: str, table: str | None = None, schema: str = "scoring"
    ) -> dict[str, str]:
        extra = {
            "SCORER_DATABASE_URL": self.db_url,
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "SCORER_MODEL_NAME": case.model_name,
            "SCORER_MODEL_ALIAS": fixtures.ALIAS,
            "SCORER_FEATURES_TABLE": table or case.table,
            "SCORER_ENTITY_COLUMN": case.entity,
            "SCORER_RUN_ID": run_id,
            "SCORER_TARGET_SCHEMA": schema,
        }
        if case.snapshot_column is not None:
            extra["SCORER_SNAPSHOT_COLUMN"] = case.snapshot_column
        return extra

    def clear(self, schema: str = "scoring") -> None:
        """Drop the runs' partitions and rows, so every run starts from the same database."""
        with closing(psycopg2.connect(self.db_url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                # A sharded run's partition is itself partitioned (its shards' tables): drop
                # those first, then whatever is left; every shard table of the run goes with it.
                cur.execute(
                    "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_inherits i"
                    " JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relkind DESC",
                    (schema,),
                )
                for (table,) in cur.fetchall():
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
                # CASCADE: scoring_run_shards refers to it (migration 6); older schemas have none.
                cur.execute(f"TRUNCATE {schema}.scoring_runs CASCADE")
                cur.execute("CHECKPOINT")

    def scorer(  # noqa: PLR0913 - the case, its size and attempt; how this run differs
        self,
        case: Case,
        rows: int,
        attempt: int,
        *,
        before: bool = False,
        extra: dict[str, str] | None = None,
        module: str = "scorer",
        reference: bool = False,
    ) -> Sample:
        """One end-to-end run of the case (``extra``: settings on top of the case's own, e.g.
        its N/4 table as ``SCORER_FEATURES_TABLE``; ``module``: the program run, ``scorer`` or
        a benchmark's own entry point to its command line; ``reference``: after a published
        run of the same settings, not measured and not recorded in MLflow, as the quality
        gate's and the drift evidence's reference)."""
        schema, tree = (BEFORE_SCHEMA, self.before) if before else ("scoring", REPO)
        assert tree is not None
        self.clear(schema)
        run_id = f"bench-{case.name}-{rows}-{attempt}-{time.time_ns()}"
        env = {**self.scorer_env(case, run_id, schema=schema), **(extra or {})}
        if reference:
            run_child(
                [sys.executable, "-m", "scorer", "run"],
                child_env(
                    {**env, "SCORER_RUN_ID": f"{run_id}-ref", "SCORER_MLFLOW_RECORD": "false"}, tree
                ),
                self.cluster.postmaster,
                cwd=tree,
            )
        sample = run_child(
            [sys.executable, "-m", module, "run"],
            child_env(env, tree),
            self.cluster.postmaster,
            cwd=tree,
        )
        summary = [
            json.loads(line) for line in sample.stdout.splitlines() if '"run.succeeded"' in line
        ]
        if not summary or summary[0]["rows_scored"] != rows:
            raise RuntimeError(f"scorer did not score {rows} rows:\n{sample.stdout[-2000:]}")
        return sample

    def sharded(
        self, case: Case, rows: int, shards: int, extra: dict[str, str] | None = None
    ) -> Sample:
        """One run of ``shards`` shards as concurrent processes (as an Indexed Job's pods):
        wall time to the last, the CPU of every shard process, the server's CPU around them."""
        self.clear("scoring")
        run_id = f"bench-shards-{shards}-{time.time_ns()}"
        env = {**self.scorer_env(case, run_id), **(extra or {})}
        sample = run_children(
            [sys.executable, "-m", "scorer", "run"],
            [child_env(one) for one in shard_envs(env, shards)],
            self.cluster.postmaster,
        )
        lines = [json.loads(line) for line in sample.stdout.splitlines() if line.startswith("{")]
        published = [
            line
            for line in lines
            if line["event"] == "run.succeeded" and line["outcome"] == "published"
        ]
        if len(published) != 1 or published[0]["rows_scored"] != rows:
            raise RuntimeError(
                f"{shards} shards did not publish {rows} rows:\n{sample.stdout[-3000:]}"
            )
        return sample

    def naive(self, case: Case) -> Sample:
        self.sql("DROP TABLE IF EXISTS bench.naive_predictions", "CHECKPOINT")
        url = self.db_url.replace("postgresql://", "postgresql+psycopg2://")
        return run_child(
            [sys.executable, "-m", "benchmarks.naive", url, self.tracking_uri, case.name],
            child_env({}),
            self.cluster.postmaster,
        )

    def stages(self, cases: Sequence[Case], rows: int, repeat: int) -> dict[str, Any]:
        """Every case's stages in one child: per case, its samples and its query plan."""
        cases_args = ["--tracking-uri", self.tracking_uri, "--case", *(case.name for case in cases)]
        found: dict[str, Any] = self._stages_child(rows, repeat, cases_args)
        return found

    def before_stages(self, rows: int, repeat: int) -> list[StageRow]:
        """The older tree's own read and write stages (numeric case, its ``benchmarks``: the
        one-model command line before the real-tables cases, or today's)."""
        assert self.before is not None
        cases = "--case" in (self.before / "benchmarks" / "stages.py").read_text()
        which = (
            ["--tracking-uri", self.tracking_uri, "--case", NUMERIC.name]
            if cases
            else ["--model", str(self.model_file)]
        )
        stages = ["--stages", "read", "read-parse", "write-scorer"]
        found = self._stages_child(rows, repeat, [*which, *stages], self.before)
        rows_found: list[StageRow] = found[NUMERIC.name]["stages"] if cases else found
        return rows_found

    def _stages_child(self, rows: int, repeat: int, args: list[str], tree: Path = REPO) -> Any:
        """``python -m benchmarks.stages`` of ``tree`` over ``rows`` rows: its JSON."""
        self.sql("CHECKPOINT")
        command = [sys.executable, "-m", "benchmarks.stages", "--url", self.db_url]
        command += ["--rows", str(rows), "--repeat", str(repeat)]
        command += ["--postmaster", str(self.cluster.postmaster), *args]
        sample = run_child(command, child_env({}, tree), self.cluster.postmaster, cwd=tree)
        return json.loads(sample.stdout)

    def one_row_table(self, case: Case) -> str:
        """The case's table cut to its first row (made once): a run with nothing to score."""
        one = f"{case.table}_one_row"
        self.sql(
            f"CREATE TABLE IF NOT EXISTS {one} AS SELECT * FROM {case.table}"
            f" ORDER BY {case.entity} LIMIT 1"
        )
        return one

    def joiner_envs(self, case: Case, env: dict[str, str]) -> list[dict[str, str]]:
        """Shards 0 and 1 of a new two-shard run of ``env`` over the one-row table, MLflow
        record off: shard 1 joins with no rows of its own (``joiner_sample``)."""
        one = {
            **env,
            "SCORER_FEATURES_TABLE": self.one_row_table(case),
            "SCORER_RUN_ID": f"bench-joiner-{time.time_ns()}",
            "SCORER_MLFLOW_RECORD": "false",
        }
        return shard_envs(one, 2)

    def joiner_sample(self, case: Case) -> Sample:
        """A shard joining a two-shard run with no rows of its own (the run's table holds one
        row, which the opening shard scores): its process is a joining shard's fixed start-up
        (imports, the recorded run, the model from the run's copy) and the publish, without
        the MLflow record."""
        self.clear("scoring")
        shards = self.joiner_envs(case, self.scorer_env(case, "bench-joiner"))
        opener, joiner = (child_env(shard) for shard in shards)
        args = [sys.executable, "-m", "scorer", "run"]
        run_child(args, opener, self.cluster.postmaster)
        sample = run_child(args, joiner, self.cluster.postmaster)
        if '"loaded_from": "run copy"' not in sample.stdout or '"published"' not in sample.stdout:
            raise RuntimeError(f"the joining shard did not join and publish:\n{sample.stdout}")
        return sample

    def check_sample(self, case: Case) -> Sample:
        """One ``scorer check`` of the case."""
        return run_child(
            [sys.executable, "-m", "scorer", "check"],
            child_env(self.scorer_env(case, "bench-check")),
            self.cluster.postmaster,
        )

    def check(self, case: Case) -> dict[str, float]:
        """``scorer check``: process start to ``model.loaded``, wall and CPU of the check."""
        sample = self.check_sample(case)
        return {
            "to_model_loaded": to_model_loaded(sample),
            "check_wall": sample.wall,
            "check_cpu": sample.client_cpu + sample.server_cpu,
            "check_rss_mb": sample.max_rss_mb,
        }

    def import_times(self, case: Case) -> list[tuple[str, float]]:
        """Top-level packages by cumulative import time (``-X importtime``) of ``scorer check``."""
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "scorer", "check"],
            env=child_env(self.scorer_env(case, "bench-check")),
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
        )
        found: dict[str, float] = {}
        for line in result.stderr.splitlines():
            match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
            if match and not match.group(2).startswith(" "):
                name = match.group(2).split(".")[0]
                found[name] = found.get(name, 0.0) + int(match.group(1)) / 1e6
        return sorted(found.items(), key=lambda item: -item[1])[:8]


def to_model_loaded(sample: Sample) -> float:
    """Seconds from starting the child to its ``model.loaded`` log line."""
    loaded: dict[str, str] = next(
        json.loads(line) for line in sample.stdout.splitlines() if '"model.loaded"' in line
    )
    stamp = datetime.fromisoformat(loaded["timestamp"].replace("Z", "+00:00")).timestamp()
    return stamp - sample.started
