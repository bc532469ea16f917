"""Start-up in the shipped image: ``docker run IMAGE check`` against an ``mlflow server``.

The development environment carries full MLflow and scikit-learn (``import xgboost`` then
imports scikit-learn and SciPy); the image carries mlflow-skinny and xgboost-cpu only, and
production resolves through an HTTP registry. This measures that configuration.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from datetime import datetime
from pathlib import Path

from benchmarks import fixtures
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
    image: str, env: dict[str, str], quarter_env: dict[str, str], workdir: Path, repeat: int
) -> dict[str, float]:
    """Start-up, and ``run`` at N and N/4 rows, in ``image`` against an HTTP registry."""
    with mlflow_server(workdir / "mlflow-server") as uri:
        (workdir / "http-model").mkdir()
        fixtures.register_model(uri, workdir / "http-model")
        env = {**env, "MLFLOW_TRACKING_URI": uri}
        quarter_env = {**quarter_env, "MLFLOW_TRACKING_URI": uri}
        startup = _startup(image, env, repeat)
        full = run_in_image(image, env, repeat)
        quarter = run_in_image(image, quarter_env, repeat)
    return {
        "image_to_model_loaded": startup,
        "image_run_wall": statistics.median(wall for wall, _ in full),
        "image_run_rss_mb": max(rss for _, rss in full),
        "image_quarter_rss_mb": max(rss for _, rss in quarter),
    }


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
    "import resource, subprocess, sys, time; start = time.perf_counter(); "
    "code = subprocess.run([sys.executable, '-m', 'scorer', 'run'], stdout=subprocess.DEVNULL)"
    ".returncode; usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(code, time.perf_counter() - start, usage.ru_maxrss / 1024, "
    "usage.ru_utime + usage.ru_stime)"
)


def run_in_image(image: str, env: dict[str, str], repeat: int) -> list[tuple[float, float]]:
    """(wall seconds, peak RSS MB) of ``scorer run`` in the image, ``repeat`` times.

    ``env`` must name an HTTP registry; each run needs its own SCORER_RUN_ID (suffixed here).
    """
    samples: list[tuple[float, float]] = []
    for attempt in range(repeat):
        args = ["docker", "run", "--rm", "--network", "host", "--entrypoint", "python"]
        for name in _ENV:
            value = env[name] + (f"-{attempt}" if name == "SCORER_RUN_ID" else "")
            args += ["-e", f"{name}={value}"]
        args += [image, "-c", _MEASURE]
        result = subprocess.run(args, capture_output=True, text=True, check=True, timeout=900)
        code, wall, rss, _cpu = result.stdout.split()
        if code != "0":
            raise RuntimeError(f"scorer run in {image} exited {code}")
        samples.append((float(wall), float(rss)))
    return samples
