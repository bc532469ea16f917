"""The scorer as shipped: ``docker run IMAGE`` against an ``mlflow server``.

The development environment carries full MLflow and scikit-learn (``import xgboost`` then
imports scikit-learn and SciPy); the image carries mlflow-skinny and xgboost-cpu only, and
production resolves through an HTTP registry. This measures that configuration on the numeric
case (the default image carries xgboost only): start-up (``check``) and ``run`` at N and N/4
rows, with the container's CPU and peak RSS (rusage of the scorer process inside it) and
the server's CPU (its process tree on this host).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from benchmarks import cluster, fixtures
from benchmarks.cli import Bench, Sample
from benchmarks.levers import Lever
from tests.services import mlflow_server

_ENV = (
    "SCORER_DATABASE_URL",
    "MLFLOW_TRACKING_URI",
    "SCORER_MODEL_NAME",
    "SCORER_MODEL_ALIAS",
    "SCORER_FEATURES_TABLE",
    "SCORER_ENTITY_COLUMN",
    "SCORER_RUN_ID",
)


def measure_image(
    image: str, bench: Bench, rows: int, repeat: int, levers: list[Lever]
) -> dict[str, Any]:
    """Start-up, and ``run`` at ``rows`` and at N/4 rows, in ``image`` (HTTP registry); the
    run at ``rows`` also under each lever, interleaved."""
    small = max(rows // 4, 1)
    env = bench.scorer_env(fixtures.NUMERIC, f"bench-image-{rows}")
    quarter_env = bench.scorer_env(
        fixtures.NUMERIC, f"bench-image-{small}", fixtures.NUMERIC.quarter
    )
    workdir = bench.workdir

    def server_cpu() -> float:
        return cluster.server_cpu(bench.cluster.postmaster)

    with mlflow_server(workdir / "mlflow-server") as uri:
        (workdir / "http-model").mkdir()
        fixtures.register_model(uri, workdir / "http-model")
        env = {**env, "MLFLOW_TRACKING_URI": uri}
        quarter_env = {**quarter_env, "MLFLOW_TRACKING_URI": uri}
        startup = _startup(image, env, repeat)
        full, quarter = [], []
        by_lever: dict[str, list[Sample]] = {lever.name: [] for lever in levers}
        for attempt in range(repeat):  # interleaved, like the runs outside the image
            full.append(run_in_image(image, env, attempt, server_cpu, rows))
            quarter.append(run_in_image(image, quarter_env, attempt, server_cpu, small))
            for lever in levers:
                run_id = f"{env['SCORER_RUN_ID']}-{lever.name}"
                lever_env = {**env, **lever.env, "SCORER_RUN_ID": run_id}
                by_lever[lever.name].append(
                    run_in_image(image, lever_env, attempt, server_cpu, rows)
                )
    return {"to_model_loaded": startup, "run": full, "quarter": quarter, "levers": by_lever}


def _startup(image: str, env: dict[str, str], repeat: int) -> float:
    """Median seconds from the container's process start to ``model.loaded``."""
    samples: list[float] = []
    for _ in range(repeat + 1):  # the first run warms the page cache
        args = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "sh"]
        for name in _ENV:
            args += ["-e", f"{name}={env[name]}"]
        args += [image, "-c", "date +%s.%N; exec python -m scorer check"]
        result = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120)
        first, *lines = result.stdout.splitlines()
        loaded = next(json.loads(line) for line in lines if '"model.loaded"' in line)
        stamp = datetime.fromisoformat(loaded["timestamp"].replace("Z", "+00:00"))
        samples.append(stamp.timestamp() - float(first))
    return statistics.median(samples[1:])


_MEASURE = (
    "import json, resource, subprocess, sys, tempfile, time\n"
    "start = time.perf_counter()\n"
    "with tempfile.TemporaryFile('w+') as out:\n"
    "    code = subprocess.run([sys.executable, '-m', 'scorer', 'run'], stdout=out).returncode\n"
    "    wall = time.perf_counter() - start\n"
    "    out.seek(0)\n"
    "    done = [json.loads(line) for line in out if '\"run.succeeded\"' in line]\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(code, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime,\n"
    "      done[-1]['rows_scored'] if done else -1, done[-1]['outcome'] if done else '-')\n"
)
"""Run the scorer in the container: its exit code, wall, peak RSS, CPU, rows and outcome."""


def run_in_image(
    image: str, env: dict[str, str], attempt: int, server_cpu: Callable[[], float], rows: int
) -> Sample:
    """One ``scorer run`` in the image, which must publish ``rows`` rows; ``env`` names an HTTP
    registry and a run id to suffix."""
    args = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python"]
    for name in (*_ENV, *(name for name in env if name not in _ENV)):
        value = env[name] + (f"-{attempt}" if name == "SCORER_RUN_ID" else "")
        args += ["-e", f"{name}={value}"]
    args += [image, "-c", _MEASURE]
    server, started = server_cpu(), time.time()
    result = subprocess.run(args, capture_output=True, text=True, check=True, timeout=900)
    time.sleep(0.3)  # the postmaster reaps the run's backends
    server = server_cpu() - server
    code, wall, rss, cpu, scored, outcome = result.stdout.split()
    if code != "0" or (int(scored), outcome) != (rows, "published"):
        raise RuntimeError(
            f"scorer run in {image} exited {code}, {outcome} with {scored} of {rows} rows"
        )
    return Sample(float(wall), float(cpu), server, float(rss), "", started)
