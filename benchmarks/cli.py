"""``python -m benchmarks [--rows N ...] [--quick] [--before REV] [--case ...] [--json PATH]``.

Sets up a throwaway PostgreSQL cluster and a sqlite MLflow registry per size, then measures
each case (a table shape and the model scoring it: ``numeric``, ``telco-xgboost``,
``telco-sklearn``; see ``benchmarks.fixtures``), each figure the median of R runs in child
processes: the scorer's ``run`` end to end at N rows scored and at N/4 (memory flatness),
the naive pipeline on the same rows, each stage alone (``benchmarks.stages``) and the
start-up. ``--before REV`` also runs the scorer of an older commit on the numeric case,
interleaved with today's (its ``git archive``, imported from a temporary directory), and its
own read and write stages; ``--image`` the scorer in that image (numeric case).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from benchmarks import fixtures
from benchmarks.cluster import Cluster, server_cpu
from benchmarks.fixtures import CASES, NUMERIC, Case
from scorer.io import cpus

REPO = Path(__file__).resolve().parents[1]
QUICK_ROWS = 100_000
QUICK_TRAIN_ROWS = 4_000
BEFORE_SCHEMA = "scoring_before"
SHAPES = {
    "numeric": "bench.features: bigint id, 20 float8 features; no snapshot column",
    "telco": (
        "bench.telco: text ids like 7590-VHVEG, 3 categorical text + 17 numeric (2 integer, "
        "15 float8) features, 3 snapshots in snapshot_date (indexed; primary key "
        "(customer_id, snapshot_date)); the run scores the newest, so the table holds 3 times N"
    ),
}
MODELS = {
    "numeric": f"XGBoost booster, {fixtures.TREES} trees depth {fixtures.DEPTH}",
    "telco-xgboost": (
        f"XGBoost booster with enable_categorical, {fixtures.TREES} trees depth "
        f"{fixtures.DEPTH}; signature: categories as string"
    ),
    "telco-sklearn": (
        "scikit-learn Pipeline: ColumnTransformer(OneHotEncoder, StandardScaler) + "
        "LogisticRegression (mlflow.sklearn)"
    ),
}


@dataclass
class Sample:
    """One measured child process."""

    wall: float
    client_cpu: float
    server_cpu: float
    max_rss_mb: float
    stdout: str
    started: float  # epoch seconds just before the child was started


def run_child(
    args: list[str],
    env: dict[str, str],
    postmaster: int,
    cwd: Path = REPO,
    timeout: float = 7200,
) -> Sample:
    """Run ``args``; wall time, rusage of exactly that child, server CPU around it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        server = server_cpu(postmaster)
        started = time.time()
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err, cwd=cwd)
        deadline = time.monotonic() + timeout
        peak = 0.0
        while True:  # os.wait4 gives this child's own rusage (CPU of all its threads)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, _high_water_mb(process.pid))
            if time.monotonic() > deadline:
                process.kill()
            time.sleep(0.01)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        time.sleep(0.3)  # the postmaster reaps the child's backends
        server = server_cpu(postmaster) - server
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(
            f"{args} exited {process.returncode}:\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(wall, cpu, server, peak or usage.ru_maxrss / 1024, stdout, started)


def run_children(
    args: list[str], envs: list[dict[str, str]], postmaster: int, timeout: float = 7200
) -> Sample:
    """``run_child`` for processes started at once: wall time until the last has exited, the
    sum of their own rusage, the server's CPU around them; their stdouts concatenated."""
    with ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in envs]
        server = server_cpu(postmaster)
        started = time.time()
        start = time.perf_counter()
        processes = [
            subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
            for env, out in zip(envs, outs, strict=True)
        ]
        cpu, peak = 0.0, 0.0
        codes: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(codes) < len(processes):
            for process in processes:
                if process.pid in codes:
                    continue
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    codes[pid] = os.waitstatus_to_exitcode(status)
                    cpu += usage.ru_utime + usage.ru_stime
                else:
                    peak = max(peak, _high_water_mb(process.pid))
                    if time.monotonic() > deadline:
                        process.kill()
            time.sleep(0.01)
        wall = time.perf_counter() - start
        time.sleep(0.3)  # the postmaster reaps the children's backends
        server = server_cpu(postmaster) - server
        stdout = ""
        for out in outs:
            out.seek(0)
            stdout += out.read()
    if any(codes.values()):
        raise RuntimeError(f"{args} exited {sorted(codes.values())}:\n{stdout[-3000:]}")
    return Sample(wall, cpu, server, peak, stdout, started)


def measure_shards(
    bench: Bench, rows: int, options: argparse.Namespace
) -> tuple[dict[str, dict[int, Figure]], dict[str, float]]:
    """The numeric case as 1, 2, 4 ... concurrent shards over the same rows, interleaved; as
    the scorer is, under each ``--lever``, and (with ``--image``) in the image. Also what each
    extra shard pays before its first row: a joining shard's fixed start-up (client CPU)."""
    from benchmarks.levers import with_baseline  # noqa: PLC0415 - it imports this module

    levers = with_baseline(options.levers)
    samples: dict[tuple[str, int], list[Sample]] = {
        (lever.name, count): [] for lever in levers for count in options.shards
    }
    for attempt in range(options.repeat):
        for lever in levers:
            for count in options.shards:
                found = samples[lever.name, count]
                found.append(bench.sharded(NUMERIC, rows, count, lever.env))
                progress(
                    f"[shards {count} {rows:,} {lever.name}] run {attempt + 1}:"
                    f" {found[-1].wall:.2f}s"
                )
    out: dict[str, dict[int, Figure]] = {}
    for (name, count), found in samples.items():
        out.setdefault(name, {})[count] = from_samples(f"{count} shards", rows, found)
    joins = [bench.joiner_sample(NUMERIC).client_cpu for _ in range(options.repeat)]
    startup = dict.fromkeys(out, statistics.median(joins))
    if options.image:
        from benchmarks.image import measure_image_shards  # noqa: PLC0415 - needs docker

        image = options.image
        in_image, startup[f"in {image}"] = measure_image_shards(
            image, bench, rows, options.shards, options.repeat
        )
        out[f"in {image}"] = {
            count: from_samples(f"{count} shards in {image}", rows, found)
            for count, found in in_image.items()
        }
    return out, startup


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


def report_shards(
    rows: int, figures: dict[str, dict[int, Figure]], startup: dict[str, float]
) -> str:
    """The shards table: CPU per million rows, client + server, against one shard; and the
    same with each extra (joining) shard's fixed start-up taken out."""
    lines = [
        f"shards over the same {rows:,} rows (numeric case), concurrent processes on this machine",
        "(N shards: each N-th of the CPUs, as pods requesting that share; 1 shard: all of them)",
        "",
        "| lever | shards | wall s | client CPU s per 1M | server CPU s per 1M"
        " | CPU s per 1M rows | vs 1 shard | start-up CPU s per joining shard"
        " | vs 1 shard, extra start-ups aside |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, counts in figures.items():
        one = counts[min(counts)]
        for count, found in sorted(counts.items()):
            extra = (count - min(counts)) * startup[name] * 1e6 / rows
            lines.append(
                f"| {name} | {count} | {found.wall:.2f} | {found.client_cpu_per_m:.2f}"
                f" | {found.server_cpu_per_m:.2f} | {found.cpu_per_m:.2f}"
                f" | {found.cpu_per_m / one.cpu_per_m - 1:+.1%} | {startup[name]:.2f}"
                f" | {(found.cpu_per_m - extra) / one.cpu_per_m - 1:+.1%} |"
            )
    return "\n".join(lines)


def _high_water_mb(pid: int) -> float:
    """The process's peak RSS so far (``VmHWM``), 0 once it has exited.

    Not ``ru_maxrss``: after fork and exec Linux carries the parent's high-water mark into
    the child's, so a child of this (mlflow-importing) process would never report less
    than the parent's ~400 MB.
    """
    try:
        with Path(f"/proc/{pid}/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def child_env(extra: dict[str, str], tree: Path = REPO) -> dict[str, str]:
    """A clean environment: no SCORER_*/MLFLOW_* from the shell, ``tree`` importable first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCORER_", "MLFLOW_"))}
    return {**base, "PYTHONPATH": str(tree), **extra}


@dataclass
class Figure:
    """The median of a measurement's samples."""

    name: str
    rows: int
    runs: int
    wall: float
    rows_per_s: float
    max_rss_mb: float | None
    client_cpu_per_m: float
    server_cpu_per_m: float

    @property
    def cpu_per_m(self) -> float:
        """Client + server CPU seconds per million rows."""
        return self.client_cpu_per_m + self.server_cpu_per_m


def figure(name: str, rows: int, runs: list[tuple[float, float, float, float | None]]) -> Figure:
    """Medians of (wall, client CPU, server CPU, peak RSS MB) samples; the highest peak RSS."""
    wall = statistics.median(run[0] for run in runs)
    per_m = 1e6 / rows
    rss = [run[3] for run in runs if run[3] is not None]
    return Figure(
        name,
        rows,
        len(runs),
        wall,
        rows / wall,
        max(rss) if rss else None,
        statistics.median(run[1] for run in runs) * per_m,
        statistics.median(run[2] for run in runs) * per_m,
    )


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stdout, with the time since the benchmark started."""
    print(f"# [{time.perf_counter() - _STARTED:6.0f}s] {message}", flush=True)


def _mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def extract(revision: str, workdir: Path) -> Path:
    """``git archive revision`` of this repository, unpacked under ``workdir``."""
    tree = workdir / f"scorer-{revision}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


class Bench:
    """One sitting: a cluster, a registry, the tables of the cases measured."""

    def __init__(self, cluster: Cluster, workdir: Path, before: Path | None = None) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.before = before
        self.db_url = cluster.url.rsplit("/", 1)[0] + "/bench"
        self.tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        self.model_file = Path()

    def setup(self, rows: int, cases: list[Case], train_rows: int) -> None:
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
        registered = {
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

    def scorer(
        self,
        case: Case,
        rows: int,
        attempt: int,
        *,
        before: bool = False,
        extra: dict[str, str] | None = None,
    ) -> Sample:
        """One end-to-end run of the case (``extra``: settings on top of the case's own, e.g.
        its N/4 table as ``SCORER_FEATURES_TABLE``)."""
        schema, tree = (BEFORE_SCHEMA, self.before) if before else ("scoring", REPO)
        assert tree is not None
        self.clear(schema)
        run_id = f"bench-{case.name}-{rows}-{attempt}-{time.time_ns()}"
        env = {**self.scorer_env(case, run_id, schema=schema), **(extra or {})}
        sample = run_child(
            [sys.executable, "-m", "scorer", "run"],
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

    def stages(self, cases: list[Case], rows: int, repeat: int) -> dict[str, Any]:
        """Every case's stages in one child: per case, its samples and its query plan."""
        self.sql("CHECKPOINT")
        sample = run_child(
            [
                sys.executable,
                "-m",
                "benchmarks.stages",
                "--url",
                self.db_url,
                "--tracking-uri",
                self.tracking_uri,
                "--case",
                *[case.name for case in cases],
                "--rows",
                str(rows),
                "--repeat",
                str(repeat),
                "--postmaster",
                str(self.cluster.postmaster),
            ],
            child_env({}),
            self.cluster.postmaster,
        )
        found: dict[str, Any] = json.loads(sample.stdout)
        return found

    def before_stages(self, rows: int, repeat: int) -> list[dict[str, Any]]:
        """The older tree's own read and write stages (numeric case, its ``benchmarks``: the
        one-model command line before the real-tables cases, or today's)."""
        assert self.before is not None
        self.sql("CHECKPOINT")
        cases = "--case" in (self.before / "benchmarks" / "stages.py").read_text()
        which = (
            ["--tracking-uri", self.tracking_uri, "--case", NUMERIC.name]
            if cases
            else ["--model", str(self.model_file)]
        )
        sample = run_child(
            [
                sys.executable,
                "-m",
                "benchmarks.stages",
                "--url",
                self.db_url,
                "--rows",
                str(rows),
                "--repeat",
                str(repeat),
                "--postmaster",
                str(self.cluster.postmaster),
                *which,
                "--stages",
                "read",
                "read-parse",
                "write-scorer",
            ],
            child_env({}, self.before),
            self.cluster.postmaster,
            cwd=self.before,
        )
        found = json.loads(sample.stdout)
        stages: list[dict[str, Any]] = found[NUMERIC.name]["stages"] if cases else found
        return stages

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
            "to_model_loaded": _to_model_loaded(sample),
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


def _to_model_loaded(sample: Sample) -> float:
    """Seconds from starting the child to its ``model.loaded`` log line."""
    loaded = next(
        json.loads(line) for line in sample.stdout.splitlines() if '"model.loaded"' in line
    )
    stamp = datetime.fromisoformat(loaded["timestamp"].replace("Z", "+00:00")).timestamp()
    return stamp - sample.started


def _stage_figures(rows: list[dict[str, Any]], prefix: str = "stage") -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for name in dict.fromkeys(row["stage"] for row in rows):
        mine = [row for row in rows if row["stage"] == name]
        out[name] = figure(
            f"{prefix}: {name}",
            mine[0]["rows"],
            [(r["wall"], r["client_cpu"], r["server_cpu"], None) for r in mine],
        )
    return out


def from_samples(name: str, rows: int, samples: list[Sample]) -> Figure:
    return figure(name, rows, [(s.wall, s.client_cpu, s.server_cpu, s.max_rss_mb) for s in samples])


def measure_case(
    bench: Bench, case: Case, rows: int, options: argparse.Namespace
) -> dict[str, Any]:
    """One case at one size: its runs interleaved (the stages come after every case's)."""
    repeat, quick = options.repeat, options.quick
    naive_repeat = options.naive_repeats.get(rows, repeat)
    small = max(rows // 4, 1)
    before = bench.before is not None
    label = f"[{case.name} {rows:,}]"
    estimate = options.naive_rss_per_row.get(case.name)
    if estimate is not None and estimate * rows * 1.3 > _mem_available_mb():
        progress(f"{label} naive skipped: needs ~{estimate * rows:,.0f} MB")
        naive_repeat = 0
    checks = [] if quick else [bench.check(case) for _ in range(repeat)]
    scorer: list[Sample] = []
    older: list[Sample] = []
    quarter: list[Sample] = []
    naive: list[Sample] = []
    for attempt in range(max(repeat, naive_repeat)):  # interleaved: drift hits all alike
        if attempt < repeat:
            scorer.append(bench.scorer(case, rows, attempt))
            note = f"scorer {scorer[-1].wall:.2f}s"
            if before:
                older.append(bench.scorer(case, rows, attempt, before=True))
                note += f", before {older[-1].wall:.2f}s"
            quarter_table = {"SCORER_FEATURES_TABLE": case.quarter}
            quarter.append(bench.scorer(case, small, attempt, extra=quarter_table))
            progress(f"{label} run {attempt + 1}: {note}, N/4 {quarter[-1].wall:.2f}s")
        if attempt < naive_repeat:
            naive.append(bench.naive(case))
            progress(f"{label} naive run {attempt + 1}: {naive[-1].wall:.2f}s")
    if naive:
        options.naive_rss_per_row[case.name] = max(s.max_rss_mb for s in naive) / rows
    result: dict[str, Any] = {
        "case": case.name,
        "rows": rows,
        "scorer": from_samples("scorer run (end to end)", rows, scorer),
        "scorer_quarter": from_samples("scorer run, N/4 rows", small, quarter),
        "to_model_loaded": statistics.median(_to_model_loaded(s) for s in scorer),
        "imports": [] if quick else bench.import_times(case),
    }
    if naive:
        result["naive"] = from_samples(f"naive: read_sql, {case.naive}, to_sql", rows, naive)
    if checks:
        result["startup"] = {key: statistics.median(s[key] for s in checks) for key in checks[0]}
    if before:
        revision = options.before
        result["before"] = from_samples(f"scorer run, before ({revision})", rows, older)
        result["before_to_model_loaded"] = statistics.median(_to_model_loaded(s) for s in older)
        if case is NUMERIC:  # the older tree's stages: its own benchmark, numeric only
            result["before_stages"] = _stage_figures(
                bench.before_stages(rows, options.stage_repeat), f"before ({revision})"
            )
    return result


def measure(rows: int, workdir: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Every case for one size, in one sitting (one cluster, one registry)."""
    cases = [CASES[name] for name in options.case]
    before = extract(options.before, workdir) if options.before else None
    train_rows = QUICK_TRAIN_ROWS if options.quick else 20_000
    cluster = Cluster.start()
    try:
        bench = Bench(cluster, workdir, before)
        bench.setup(rows, cases, train_rows)
        load_before = os.getloadavg()
        results: dict[str, Any] = {}
        shards, shard_startup = measure_shards(bench, rows, options) if options.shards else ({}, {})
        levers = None
        if options.levers:
            from benchmarks.levers import measure_levers  # noqa: PLC0415 - it imports this module

            levers = {
                case.name: measure_levers(bench, case, rows, options.levers, options.repeat)
                for case in cases
            }
        if not options.only:
            results = {case.name: measure_case(bench, case, rows, options) for case in cases}
            started = time.perf_counter()
            for name, found in bench.stages(cases, rows, options.stage_repeat).items():
                results[name]["stages"] = _stage_figures(found["stages"])
                results[name]["explain"] = found["explain"]
            bench.say("stages of every case", started)
        if options.image and NUMERIC in cases and not options.only_shards:
            _measure_image(bench, rows, options, results, levers)
        load_after = os.getloadavg()
    finally:
        cluster.stop()
    return {
        "rows": rows,
        "load": [load_before, load_after],
        "cases": results,
        "shards": shards,
        "shard_startup": shard_startup,
        "levers": levers,
    }


def _measure_image(
    bench: Bench,
    rows: int,
    options: argparse.Namespace,
    results: dict[str, Any],
    levers: dict[str, dict[str, Figure]] | None,
) -> None:
    """The numeric case in ``--image``: into its results, and (with ``--lever``) the levers."""
    from benchmarks.image import measure_image  # noqa: PLC0415 - needs docker

    image = options.image
    found = measure_image(image, bench, rows, options.repeat, options.levers)
    run = from_samples(f"scorer run in {image}", rows, found["run"])
    if levers is not None:
        levers[f"{NUMERIC.name} in {image}"] = {
            "baseline": run,
            **{name: from_samples(name, rows, got) for name, got in found["levers"].items()},
        }
    if NUMERIC.name in results:
        numeric = results[NUMERIC.name]
        numeric["image"] = image
        numeric["image_startup"] = found["to_model_loaded"]
        numeric["image_scorer"] = run
        numeric["image_quarter"] = from_samples(
            f"scorer run in {image}, N/4 rows", rows // 4, found["quarter"]
        )


def _sum(stages: dict[str, Figure], names: tuple[str, ...], attribute: str) -> float:
    return sum(getattr(stages[name], attribute) for name in names)


BARE = ("read-raw", "predict-model", "write-narrow")
"""The least each step costs: plain COPY out, the library's predict, narrow COPY in."""
OWN = ("read-parse", "predict-scorer", "write-scorer")
"""The scorer's own steps: its reader, its predict call, its partition write (key, attach)."""


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """The ratios the issues ask for, and the CI guard checks."""
    scorer: Figure = result["scorer"]
    stages: dict[str, Figure] = result["stages"]
    startup = result["to_model_loaded"]
    bare_wall = _sum(stages, BARE, "wall")
    out = {
        "rss_n_over_rss_quarter": _rss(scorer) / _rss(result["scorer_quarter"]),
        "e2e_wall_over_bare_stage_wall": scorer.wall / bare_wall,
        "e2e_wall_minus_startup_over_bare_stage_wall": (scorer.wall - startup) / bare_wall,
        "e2e_wall_over_own_stage_wall": scorer.wall / _sum(stages, OWN, "wall"),
        "e2e_cpu_over_bare_stage_cpu": scorer.cpu_per_m / _sum(stages, BARE, "cpu_per_m"),
        "e2e_cpu_over_own_stage_cpu": scorer.cpu_per_m / _sum(stages, OWN, "cpu_per_m"),
        "e2e_wall_over_cpu_per_core": _wall_over_cpu_per_core(scorer),
    }
    if "parse" in stages and "parse-no-evidence" in stages:
        # What the quality gate's evidence (NULL/empty counts per input) adds to a whole run.
        evidence = stages["parse"].cpu_per_m - stages["parse-no-evidence"].cpu_per_m
        out["gate_evidence_cpu_per_m"] = evidence
        out["gate_evidence_share_of_e2e_cpu"] = evidence / scorer.cpu_per_m
    if "naive" in result:
        out["scorer_over_naive"] = scorer.rows_per_s / result["naive"].rows_per_s
    if "startup" in result:
        startup_cpu_per_m = result["startup"]["check_cpu"] * 1e6 / scorer.rows
        out["e2e_cpu_minus_startup_over_own_stage_cpu"] = (
            scorer.cpu_per_m - startup_cpu_per_m
        ) / _sum(stages, OWN, "cpu_per_m")
    if "before" in result:
        before: Figure = result["before"]
        out["after_over_before_rows_per_s"] = scorer.rows_per_s / before.rows_per_s
        out["after_over_before_cpu"] = scorer.cpu_per_m / before.cpu_per_m
    if "image_scorer" in result:
        image: Figure = result["image_scorer"]
        out["image_rss_n_over_rss_quarter"] = _rss(image) / _rss(result["image_quarter"])
        if "naive" in result:
            out["image_over_naive"] = image.rows_per_s / result["naive"].rows_per_s
    return out


def _rss(f: Figure) -> float:
    assert f.max_rss_mb is not None
    return f.max_rss_mb


def _wall_over_cpu_per_core(f: Figure) -> float:
    return f.wall / (f.cpu_per_m * f.rows / 1e6 / (os.cpu_count() or 1))


def _row(f: Figure) -> str:
    rss = f"{f.max_rss_mb:.0f}" if f.max_rss_mb else "—"
    return (
        f"| {f.name} | {f.runs} | {f.wall:.2f} | {f.rows_per_s:,.0f} | {rss} | "
        f"{f.client_cpu_per_m:.2f} + {f.server_cpu_per_m:.2f} = {f.cpu_per_m:.2f} |"
    )


def report_case(result: dict[str, Any]) -> list[str]:
    """One case's table of medians, its start-up and its ratios."""
    case = CASES[result["case"]]
    lines = [
        f"### {case.name}: {MODELS[case.name]}",
        "",
        f"Table: {SHAPES[case.shape]}. Feature query plan: `{result['explain']}`.",
        "",
        "| measurement | runs | wall s | rows/s | peak RSS MB "
        "| CPU s per 1M rows: client + server = total |",
        "|---|---|---|---|---|---|",
    ]
    keys = ("scorer", "before", "scorer_quarter", "image_scorer", "image_quarter", "naive")
    figures = [result[key] for key in keys if key in result]
    figures += [*result["stages"].values(), *result.get("before_stages", {}).values()]
    lines += [_row(f) for f in figures]
    lines += [
        "",
        f"process start → model loaded (in the runs, median): {result['to_model_loaded']:.2f}s",
    ]
    if "before_to_model_loaded" in result:
        lines[-1] += f"; before: {result['before_to_model_loaded']:.2f}s"
    if "startup" in result:
        s = result["startup"]
        lines.append(
            f"`scorer check` (median): {s['check_wall']:.2f}s wall, {s['check_cpu']:.2f}s CPU, "
            f"{s['check_rss_mb']:.0f} MB"
        )
    if "image_startup" in result:
        lines.append(
            f"in image {result.get('image')}: start → model loaded {result['image_startup']:.2f}s"
        )
    if result["imports"]:
        lines.append(
            "import time (cumulative, -X importtime): "
            + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result["imports"])
        )
    lines += ["", *[f"- {name}: {value:.2f}" for name, value in ratios(result).items()], ""]
    return lines


def report(result: dict[str, Any]) -> str:
    """Markdown: per case, a table of the medians, then the ratios."""
    load = result["load"]
    lines = [
        f"## {result['rows']:,} rows scored — {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, load average {load[0][0]:.1f} before "
        f"/ {load[1][0]:.1f} after",
        "",
    ]
    for case_result in result["cases"].values():
        lines += report_case(case_result)
    if result.get("shards"):
        lines += ["", report_shards(result["rows"], result["shards"], result["shard_startup"])]
    if result.get("levers"):
        from benchmarks.levers import report_levers  # noqa: PLC0415 - it imports this module

        lines += ["", report_levers(result["rows"], result["levers"], result["lever_settings"])]
    return "\n".join(lines)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for name, case_result in result["cases"].items():
        out = {
            key: asdict(value) if isinstance(value, Figure) else value
            for key, value in case_result.items()
        }
        for key in ("stages", "before_stages"):
            if key in case_result:
                out[key] = {stage: asdict(f) for stage, f in case_result[key].items()}
        out["ratios"] = ratios(case_result)
        cases[name] = out
    shards = {
        name: {str(count): asdict(found) for count, found in counts.items()}
        for name, counts in (result.get("shards") or {}).items()
    }
    levers = {
        case: {name: asdict(found) for name, found in figures.items()}
        for case, figures in (result.get("levers") or {}).items()
    }
    settings = {lever.name: lever.env for lever in result.get("lever_settings") or []}
    return {
        **result,
        "cases": cases,
        "shards": shards,
        "levers": levers,
        "lever_settings": settings,
    }


def _lever(text: str) -> Any:
    from benchmarks.levers import parse  # noqa: PLC0415 - it imports this module

    try:
        return parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="rows scored")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per measurement (3; --quick: 1)"
    )
    parser.add_argument(
        "--naive-repeat",
        type=int,
        nargs="+",
        default=None,
        help="naive runs (default --repeat); one value, or one per size of --rows (ascending)",
    )
    parser.add_argument(
        "--stage-repeat", type=int, default=None, help="stage runs (default --repeat)"
    )
    parser.add_argument(
        "--case", nargs="+", default=list(CASES), choices=list(CASES), help="cases to measure"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROWS:,} rows, models trained on {QUICK_TRAIN_ROWS:,}, no import profile",
    )
    parser.add_argument(
        "--before", metavar="REV", help="also run this commit's scorer, interleaved (every case)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--shards",
        type=int,
        nargs="+",
        default=None,
        help="also run the numeric case as this many concurrent shards (e.g. 1 2 4)",
    )
    parser.add_argument(
        "--only-shards", action="store_true", help="with --shards: measure nothing else"
    )
    parser.add_argument(
        "--lever",
        dest="levers",
        action="append",
        default=[],
        type=_lever,
        metavar="NAME:SCORER_VAR=VALUE[,...]",
        help="also run each case (and --shards) with these settings, against the scorer as"
        " it is, interleaved (e.g. threads1:SCORER_PREDICT_THREADS=1); repeatable",
    )
    parser.add_argument(
        "--only-levers", action="store_true", help="with --lever: measure nothing else"
    )
    parser.add_argument(
        "--image", help="also measure the scorer in this image (e.g. scorer:dev; needs docker)"
    )
    args = parser.parse_args(argv)
    if args.only_shards and not args.shards:
        parser.error("--only-shards needs --shards")
    if args.only_levers and not args.levers:
        parser.error("--only-levers needs --lever")
    args.only = args.only_shards or args.only_levers
    if args.shards and 1 not in args.shards:
        parser.error("--shards compares with one shard: include 1")
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.stage_repeat = args.stage_repeat or args.repeat
    args.naive_rss_per_row = {}
    sizes = [QUICK_ROWS] if args.quick else sorted(args.rows)
    naive = args.naive_repeat or []
    if len(naive) not in (0, 1, len(sizes)):
        parser.error("--naive-repeat takes one value or one per size")
    per_size = naive * len(sizes) if len(naive) == 1 else naive
    args.naive_repeats = dict(zip(sizes, per_size, strict=False))
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="scorer-bench-") as workdir:
            result = measure(rows, Path(workdir), args)
        result["lever_settings"] = args.levers
        print(report(result), flush=True)
        results.append(_jsonable(result))
        if args.json:  # after every size: a later failure keeps the earlier figures
            args.json.write_text(json.dumps(results, indent=2))
    return 0
