"""``python -m benchmarks [--rows N] [--repeat R] [--quick] [--image IMAGE] [--json PATH]``.

Sets up a throwaway PostgreSQL cluster and a sqlite MLflow registry, then measures, each as
the median of R runs in child processes: the scorer's ``run`` end to end (at N rows and at
N/4 rows, for memory flatness), the naive pipeline, the stages alone and the start-up; with
``--image``, the scorer's ``run`` and start-up in that image too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from benchmarks import fixtures
from benchmarks.cluster import Cluster, server_cpu

REPO = Path(__file__).resolve().parents[1]
QUICK_ROWS = 40_000


@dataclass
class Sample:
    """One measured child process."""

    wall: float
    client_cpu: float
    server_cpu: float
    max_rss_mb: float
    stdout: str


def run_child(
    args: list[str], env: dict[str, str], postmaster: int, timeout: float = 3600
) -> Sample:
    """Run ``args``; wall time, rusage of exactly that child, server CPU around it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        server = server_cpu(postmaster)
        start = time.perf_counter()
        process = subprocess.Popen(args, env=env, stdout=out, stderr=err, cwd=REPO)
        deadline = time.monotonic() + timeout
        while True:  # os.wait4 gives this child's own rusage (peak RSS, CPU of all threads)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
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
    return Sample(wall, usage.ru_utime + usage.ru_stime, server, usage.ru_maxrss / 1024, stdout)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """A clean environment: no SCORER_*/MLFLOW_* from the shell, the repo importable."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SCORER_", "MLFLOW_"))}
    return {**base, "PYTHONPATH": str(REPO), **extra}


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


class Bench:
    """One sitting: a cluster, a registry, a features table."""

    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.db_url = cluster.url.rsplit("/", 1)[0] + "/bench"
        self.tracking_uri = f"sqlite:///{workdir / 'mlflow.db'}"
        self.model_file = Path()

    def setup(self, rows: int) -> None:
        with closing(psycopg2.connect(self.cluster.url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE bench")
        started = time.perf_counter()
        fixtures.create_features(self.db_url, rows)
        print(f"# features: {rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
        started = time.perf_counter()
        self.model_file = fixtures.register_model(self.tracking_uri, self.workdir)
        print(
            f"# model: {fixtures.TREES} trees depth {fixtures.DEPTH} registered in "
            f"{time.perf_counter() - started:.1f}s ({self.tracking_uri})",
            flush=True,
        )
        subprocess.run(
            [sys.executable, "-m", "scorer", "migrate"],
            env=child_env({"SCORER_DATABASE_URL": self.db_url}),
            check=True,
            capture_output=True,
            cwd=REPO,
        )

    def sql(self, *statements: str) -> None:
        with closing(psycopg2.connect(self.db_url)) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)

    def scorer_env(self, run_id: str, table: str = fixtures.TABLE) -> dict[str, str]:
        return child_env(
            {
                "SCORER_DATABASE_URL": self.db_url,
                "MLFLOW_TRACKING_URI": self.tracking_uri,
                "SCORER_MODEL_NAME": fixtures.MODEL_NAME,
                "SCORER_MODEL_ALIAS": fixtures.ALIAS,
                "SCORER_FEATURES_TABLE": table,
                "SCORER_ENTITY_COLUMN": fixtures.ENTITY,
                "SCORER_RUN_ID": run_id,
            }
        )

    def scorer(self, rows: int, attempt: int, table: str = fixtures.TABLE) -> Sample:
        self.sql("TRUNCATE scoring.predictions, scoring.scoring_runs", "CHECKPOINT")
        sample = run_child(
            [sys.executable, "-m", "scorer", "run"],
            self.scorer_env(f"bench-{rows}-{attempt}-{time.time_ns()}", table),
            self.cluster.postmaster,
        )
        summary = [
            json.loads(line) for line in sample.stdout.splitlines() if '"run.succeeded"' in line
        ]
        if not summary or summary[0]["rows_scored"] != rows:
            raise RuntimeError(f"scorer did not score {rows} rows:\n{sample.stdout[-2000:]}")
        return sample

    def naive(self) -> Sample:
        self.sql("DROP TABLE IF EXISTS bench.naive_predictions", "CHECKPOINT")
        url = self.db_url.replace("postgresql://", "postgresql+psycopg2://")
        return run_child(
            [sys.executable, "-m", "benchmarks.naive", url, self.tracking_uri],
            child_env({}),
            self.cluster.postmaster,
        )

    def stages(self, rows: int, repeat: int) -> list[dict[str, Any]]:
        self.sql("CHECKPOINT")
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
                "--model",
                str(self.model_file),
            ],
            child_env({}),
            self.cluster.postmaster,
        )
        result: list[dict[str, Any]] = json.loads(sample.stdout)
        return result

    def startup(self) -> dict[str, float]:
        """Process start to ``model.loaded`` (``scorer check``), wall and CPU of the check."""
        started = time.time()
        sample = run_child(
            [sys.executable, "-m", "scorer", "check"],
            self.scorer_env("bench-check"),
            self.cluster.postmaster,
        )
        loaded = next(
            json.loads(line) for line in sample.stdout.splitlines() if '"model.loaded"' in line
        )
        stamp = datetime.fromisoformat(loaded["timestamp"].replace("Z", "+00:00")).timestamp()
        return {
            "to_model_loaded": stamp - started,
            "check_wall": sample.wall,
            "check_cpu": sample.client_cpu + sample.server_cpu,
            "check_rss_mb": sample.max_rss_mb,
        }

    def import_times(self) -> list[tuple[str, float]]:
        """Top-level packages by cumulative import time (``-X importtime``) of ``scorer check``."""
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "scorer", "check"],
            env=self.scorer_env("bench-check"),
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


def _stage_figures(rows: list[dict[str, Any]]) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for name in dict.fromkeys(row["stage"] for row in rows):
        mine = [row for row in rows if row["stage"] == name]
        out[name] = figure(
            f"stage: {name}",
            mine[0]["rows"],
            [(r["wall"], r["client_cpu"], r["server_cpu"], None) for r in mine],
        )
    return out


def _from_samples(name: str, rows: int, samples: list[Sample]) -> Figure:
    return figure(name, rows, [(s.wall, s.client_cpu, s.server_cpu, s.max_rss_mb) for s in samples])


def measure(rows: int, workdir: Path, options: argparse.Namespace) -> dict[str, Any]:
    """Everything for one size, in one sitting (``--quick``: start-up once, no import profile)."""
    repeat, quick, image = options.repeat, options.quick, options.image
    naive_repeat = options.naive_repeat or repeat
    small = max(rows // 4, 1)
    cluster = Cluster.start()
    try:
        bench = Bench(cluster, workdir)
        bench.setup(rows)
        bench.sql(
            f"CREATE TABLE bench.features_quarter AS SELECT * FROM {fixtures.TABLE}"
            f" WHERE {fixtures.ENTITY} <= {small}",
            "VACUUM (FREEZE, ANALYZE) bench.features_quarter",
        )
        load_before = os.getloadavg()
        startup = [bench.startup() for _ in range(1 if quick else repeat)]
        scorer: list[Sample] = []
        quarter: list[Sample] = []
        naive: list[Sample] = []
        for attempt in range(max(repeat, naive_repeat)):  # interleaved: drift hits both alike
            if attempt < repeat:
                scorer.append(bench.scorer(rows, attempt))
                quarter.append(bench.scorer(small, attempt, "bench.features_quarter"))
                print(f"# scorer run {attempt + 1}: {scorer[-1].wall:.2f}s", flush=True)
            if attempt < naive_repeat:
                naive.append(bench.naive())
                print(f"# naive run {attempt + 1}: {naive[-1].wall:.2f}s", flush=True)
        stage_rows = bench.stages(rows, repeat)
        imports = [] if quick else bench.import_times()
        in_image: dict[str, Any] = {}
        if image:
            from benchmarks.image import measure_image  # noqa: PLC0415 - needs docker

            in_image = measure_image(image, bench, rows, small, repeat)
        load_after = os.getloadavg()
    finally:
        cluster.stop()
    stages = _stage_figures(stage_rows)
    return {
        "rows": rows,
        "scorer": _from_samples("scorer run (end to end)", rows, scorer),
        "scorer_quarter": _from_samples("scorer run, N/4 rows", small, quarter),
        "naive": _from_samples("naive: read_sql, pyfunc, to_sql", rows, naive),
        "stages": stages,
        "startup": {
            key: statistics.median(s[key] for s in startup if key in s) for key in startup[0]
        },
        "imports": imports,
        "load": [load_before, load_after],
        "image": image,
        **(
            {
                "image_startup": in_image["to_model_loaded"],
                "image_scorer": _from_samples(f"scorer run in {image}", rows, in_image["run"]),
                "image_quarter": _from_samples(
                    f"scorer run in {image}, N/4 rows", small, in_image["quarter"]
                ),
            }
            if in_image
            else {}
        ),
    }


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """The ratios the issue asks for (and the CI guard checks)."""
    scorer: Figure = result["scorer"]
    stages: dict[str, Figure] = result["stages"]
    limits = [stages[name] for name in ("read", "predict", "write-narrow")]
    slowest = min(limits, key=lambda f: f.rows_per_s)
    stage_cpu = sum(f.cpu_per_m for f in limits)
    scorer_stage_cpu = (
        stage_cpu - stages["write-narrow"].cpu_per_m + stages["write-scorer"].cpu_per_m
    )
    startup_cpu_per_m = result["startup"]["check_cpu"] * 1e6 / scorer.rows
    out = {
        "scorer_over_naive": scorer.rows_per_s / result["naive"].rows_per_s,
        "scorer_over_slowest_stage": scorer.rows_per_s / slowest.rows_per_s,
        "e2e_cpu_over_stage_cpu": scorer.cpu_per_m / stage_cpu,
        "e2e_cpu_minus_startup_over_stage_cpu": (scorer.cpu_per_m - startup_cpu_per_m) / stage_cpu,
        "e2e_cpu_minus_startup_over_stage_cpu_with_scorer_write": (
            (scorer.cpu_per_m - startup_cpu_per_m) / scorer_stage_cpu
        ),
        "e2e_wall_over_cpu_per_core": _wall_over_cpu_per_core(scorer),
        "rss_n_over_rss_quarter": scorer.max_rss_mb / result["scorer_quarter"].max_rss_mb,
    }
    if "image_scorer" in result:
        image: Figure = result["image_scorer"]
        out |= {
            "image_over_naive": image.rows_per_s / result["naive"].rows_per_s,
            "image_wall_over_cpu_per_core": _wall_over_cpu_per_core(image),
            "image_rss_n_over_rss_quarter": image.max_rss_mb / result["image_quarter"].max_rss_mb,
        }
    return out


def _wall_over_cpu_per_core(f: Figure) -> float:
    return f.wall / (f.cpu_per_m * f.rows / 1e6 / (os.cpu_count() or 1))


def report(result: dict[str, Any]) -> str:
    """A markdown table of the medians, then the ratios."""
    rows = result["rows"]
    lines = [
        f"## {rows:,} rows — {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"load average {result['load'][0][0]:.1f} before / {result['load'][1][0]:.1f} after",
        "",
        "| measurement | runs | wall s | rows/s | peak RSS MB "
        "| CPU s per 1M rows: client + server = total |",
        "|---|---|---|---|---|---|",
    ]
    figures = [
        result["scorer"],
        result["scorer_quarter"],
        *[result[key] for key in ("image_scorer", "image_quarter") if key in result],
        result["naive"],
        *result["stages"].values(),
    ]
    for f in figures:
        rss = f"{f.max_rss_mb:.0f}" if f.max_rss_mb else "—"
        lines.append(
            f"| {f.name} | {f.runs} | {f.wall:.2f} | {f.rows_per_s:,.0f} | {rss} | "
            f"{f.client_cpu_per_m:.2f} + {f.server_cpu_per_m:.2f} = {f.cpu_per_m:.2f} |"
        )
    s = result["startup"]
    lines += [
        "",
        "start-up (`scorer check`, median): process start → model loaded "
        f"{s['to_model_loaded']:.2f}s; whole check {s['check_wall']:.2f}s wall, "
        f"{s['check_cpu']:.2f}s CPU, {s['check_rss_mb']:.0f} MB",
        *(
            [
                f"in image {result['image']} (mlflow-skinny, xgboost-cpu, HTTP registry): process"
                f" start → model loaded {result['image_startup']:.2f}s (median)"
            ]
            if "image_startup" in result
            else []
        ),
        "import time (cumulative, -X importtime): "
        + ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result["imports"]),
        "",
    ]
    lines += [f"- {name}: {value:.2f}" for name, value in ratios(result).items()]
    return "\n".join(lines)


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    out = dict(result)
    for key in ("scorer", "scorer_quarter", "naive", "image_scorer", "image_quarter"):
        if key in result:
            out[key] = asdict(result[key])
    out["stages"] = {name: asdict(f) for name, f in result["stages"].items()}
    out["ratios"] = ratios(result)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="sizes to measure")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--naive-repeat", type=int, default=None, help="runs of the naive pipeline")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows, for CI")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--image", help="also measure the scorer in this image (e.g. scorer:dev; needs docker)"
    )
    args = parser.parse_args(argv)
    sizes = [QUICK_ROWS] if args.quick else args.rows
    results = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="scorer-bench-") as workdir:
            result = measure(rows, Path(workdir), args)
        print(report(result), flush=True)
        results.append(_jsonable(result))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
