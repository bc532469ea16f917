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


def startup_in_image(image: str, env: dict[str, str], workdir: Path, repeat: int) -> float:
    """Median seconds from the container's process start to ``model.loaded`` (host network)."""
    with mlflow_server(workdir / "mlflow-server") as uri:
        (workdir / "http-model").mkdir()
        fixtures.register_model(uri, workdir / "http-model")
        env = {**env, "MLFLOW_TRACKING_URI": uri}
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
