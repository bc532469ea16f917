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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from benchmarks import cluster, fixtures
from benchmarks.bench import Bench, shard_envs
from benchmarks.progress import progress
from benchmarks.types import Lever, Sample
from tests.support.services import mlflow_server

_ENV = (
    "SCORER_DATABASE_URL",
    "MLFLOW_TRACKING_URI",
    "SCORER_MODEL_NAME",
    "SCORER_MODEL_ALIAS",
    "SCORER_FEATURES_TABLE",
    "SCORER_ENTITY_COLUMN",
    "SCORER_RUN_ID",
)


@dataclass
class ImageRuns:
    """What ``measure_image`` measured in the image."""

    to_model_loaded: float  # median seconds, the container's process start to ``model.loaded``
    run: list[Sample]  # at N rows
    quarter: list[Sample]  # at N/4 rows
    levers: dict[str, list[Sample]]  # at N rows, per lever


def measure_image(
    image: str, bench: Bench, rows: int, repeat: int, levers: Sequence[Lever]
) -> ImageRuns:
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
    return ImageRuns(startup, full, quarter, by_lever)


def measure_image_shards(
    image: str, bench: Bench, rows: int, counts: Sequence[int], repeat: int
) -> tuple[dict[int, list[Sample]], float]:
    """The numeric case's run as 1, 2, 4 ... concurrent shard containers over the same rows,
    interleaved; and a joining shard's fixed start-up in the image (``joiner_cpu_in_image``)."""

    def server_cpu() -> float:
        return cluster.server_cpu(bench.cluster.postmaster)

    found: dict[int, list[Sample]] = {count: [] for count in counts}
    with mlflow_server(bench.workdir / "mlflow-server-shards") as uri:
        (bench.workdir / "http-model-shards").mkdir()
        fixtures.register_model(uri, bench.workdir / "http-model-shards")
        env = {**bench.scorer_env(fixtures.NUMERIC, "bench-check"), "MLFLOW_TRACKING_URI": uri}
        startup = joiner_cpu_in_image(image, bench, env, repeat)
        for attempt in range(repeat):
            for count in counts:
                bench.clear()
                run_id = f"bench-image-shards-{count}-{attempt}-{time.time_ns()}"
                envs = shard_envs({**env, "SCORER_RUN_ID": run_id}, count)
                found[count].append(shards_in_image(image, envs, server_cpu, rows))
                progress(
                    f"[shards {count} {rows:,} in {image}] run {attempt + 1}:"
                    f" {found[count][-1].wall:.2f}s"
                )
    return found, startup


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
    "    command = [sys.executable, '-m', 'scorer', sys.argv[1]]\n"
    "    code = subprocess.run(command, stdout=out).returncode\n"
    "    wall = time.perf_counter() - start\n"
    "    out.seek(0)\n"
    "    done = [json.loads(line) for line in out if '\"run.succeeded\"' in line]\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(code, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime,\n"
    "      done[-1]['rows_scored'] if done else -1, done[-1]['outcome'] if done else '-')\n"
)
"""Run the scorer in the container: its exit code, wall, peak RSS, CPU, rows and outcome."""


def _docker_args(image: str, env: dict[str, str], command: str) -> list[str]:
    """``docker run`` of ``_MEASURE`` around ``scorer COMMAND`` with ``env``."""
    args = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python"]
    for name in (*_ENV, *(name for name in env if name not in _ENV)):
        args += ["-e", f"{name}={env[name]}"]
    return [*args, image, "-c", _MEASURE, command]


def run_in_image(
    image: str, env: dict[str, str], attempt: int, server_cpu: Callable[[], float], rows: int
) -> Sample:
    """One ``scorer run`` in the image, which must publish ``rows`` rows; ``env`` names an HTTP
    registry and a run id to suffix."""
    env = {**env, "SCORER_RUN_ID": f"{env['SCORER_RUN_ID']}-{attempt}"}
    server, started = server_cpu(), time.time()
    result = subprocess.run(
        _docker_args(image, env, "run"), capture_output=True, text=True, check=True, timeout=900
    )
    time.sleep(0.3)  # the postmaster reaps the run's backends
    server = server_cpu() - server
    code, wall, rss, cpu, scored, outcome = result.stdout.split()
    if code != "0" or (int(scored), outcome) != (rows, "published"):
        raise RuntimeError(
            f"scorer run in {image} exited {code}, {outcome} with {scored} of {rows} rows"
        )
    return Sample(float(wall), float(cpu), server, float(rss), "", started)


def joiner_cpu_in_image(image: str, bench: Bench, env: dict[str, str], repeat: int) -> float:
    """Median CPU seconds of a joining shard in the image, as ``Bench.joiner_sample`` measures
    it locally: shard 1 of a two-shard run over one row, after shard 0 opened it."""
    samples = []
    for _ in range(repeat + 1):  # the first run warms the page cache
        bench.clear()
        outputs = []
        for shard in bench.joiner_envs(fixtures.NUMERIC, env):
            result = subprocess.run(
                _docker_args(image, shard, "run"), capture_output=True, text=True, check=True
            )
            outputs.append(result.stdout.split())
        if [(out[0], out[5]) for out in outputs] != [("0", "shard_done"), ("0", "published")]:
            raise RuntimeError(f"the joining shard in {image} did not publish: {outputs}")
        samples.append(float(outputs[1][3]))
    return statistics.median(samples[1:])


def shards_in_image(
    image: str, envs: list[dict[str, str]], server_cpu: Callable[[], float], rows: int
) -> Sample:
    """The shards of one run as concurrent containers (as an Indexed Job's pods): wall time to
    the last, the sum of their CPU (the scorer inside each), the server's CPU around them.
    Exactly one must publish, with ``rows`` rows."""
    server, started = server_cpu(), time.time()
    start = time.perf_counter()
    processes = [
        subprocess.Popen(_docker_args(image, env, "run"), stdout=subprocess.PIPE, text=True)
        for env in envs
    ]
    outputs = [process.communicate(timeout=900)[0].split() for process in processes]
    wall = time.perf_counter() - start
    time.sleep(0.3)  # the postmaster reaps the shards' backends
    server = server_cpu() - server
    codes = [int(out[0]) if out else -1 for out in outputs]
    published = [out for out in outputs if out and out[5] == "published"]
    if any(codes) or len(published) != 1 or int(published[0][4]) != rows:
        raise RuntimeError(f"{len(envs)} shards in {image} exited {codes}: {outputs}")
    cpu = sum(float(out[3]) for out in outputs)
    rss = max(float(out[2]) for out in outputs)
    return Sample(wall, cpu, server, rss, "", started)
