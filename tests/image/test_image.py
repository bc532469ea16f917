"""The container image: runs read-only as 10001, is configured as the chart expects, is small,
and `check` works from inside it against a real PostgreSQL and a real MLflow server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from typing import Any

import pytest

from tests.image.conftest import REPO

pytestmark = pytest.mark.image

MAX_SIZE_BYTES = 400 * 1000 * 1000  # "400 MB" as `docker image ls` counts it
COMMANDS = ("run", "check", "migrate", "demo")
# How the chart runs the pod: read-only root, writable /tmp, numeric non-root user.
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--user", "10001:10001"]  # noqa: S108


def docker_run(
    image: str, *args: str, env: dict[str, str] | None = None, docker_args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` hardened; ``env`` is passed by name, never on the command line."""
    names = [arg for key in (env or {}) for arg in ("-e", key)]
    return subprocess.run(
        ["docker", "run", "--rm", *HARDENED, *docker_args, *names, image, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **(env or {})},
    )


def inspect(image: str) -> dict[str, Any]:
    out = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)[0]  # type: ignore[no-any-return]


def json_events(stdout: str) -> list[dict[str, Any]]:
    """Every non-empty stdout line must be a JSON object with an ``event`` key."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no log lines on stdout"
    events = []
    for line in lines:
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert "event" in event, line
        events.append(event)
    return events


def test_help_read_only_non_root(image: str) -> None:
    result = docker_run(image, "--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout


def test_image_config(image: str) -> None:
    attrs = inspect(image)
    config = attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["python", "-m", "scorer"]
    assert config["Cmd"] == ["run"]
    assert not config.get("Healthcheck")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"

    labels = config["Labels"]
    with (REPO / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    # The commit the image was built from (HEAD may have moved since): one of this repo's.
    revision = labels["org.opencontainers.image.revision"]
    commit = revision.removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", commit), revision
    known = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], check=False
    )
    assert known.returncode == 0, f"{revision} is not a commit of {REPO}"
    assert labels["org.opencontainers.image.source"]

    assert attrs["Size"] < MAX_SIZE_BYTES, f"image is {attrs['Size'] / 1e6:.0f} MB"


BYTECODE_PROBE = """
import importlib.util, pathlib, sys
roots = [pathlib.Path(p) for p in sys.path if p.startswith("/opt/venv")]
missing = [str(py) for root in roots for py in root.rglob("*.py")
           if not pathlib.Path(importlib.util.cache_from_source(str(py))).exists()]
print(len(missing), *missing[:10], sep="\\n")
"""


def test_bytecode_compiled_at_build_time(image: str) -> None:
    """A read-only root cannot cache bytecode: every module must come precompiled."""
    result = docker_run(image, "-c", BYTECODE_PROBE, docker_args=("--entrypoint", "python"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "0", result.stdout


def test_job_stack_imports_and_predicts(image: str) -> None:
    """The trimmed dependencies still do the job: train, save, load and predict an XGBoost
    model through MLflow's flavors, read-only, writing only below /tmp."""
    probe = """
import numpy as np, pandas as pd, xgboost as xgb, mlflow.pyfunc, mlflow.xgboost
import scorer.run.single
X = np.random.default_rng(0).random((200, 3)).astype("float32")
booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(X, label=X[:, 0] > 0.5), 5)
mlflow.xgboost.save_model(booster, "/tmp/model")
loaded = mlflow.xgboost.load_model("/tmp/model")
assert np.allclose(loaded.inplace_predict(X), booster.inplace_predict(X))
frame = pd.DataFrame(X, columns=["f0", "f1", "f2"])
assert len(mlflow.pyfunc.load_model("/tmp/model").predict(frame)) == 200
print("ok")
"""
    result = docker_run(image, "-c", probe, docker_args=("--entrypoint", "python"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


@pytest.mark.parametrize(("cpus", "threads"), [((), os.cpu_count()), (("--cpus", "1"), 1)])
def test_check_against_real_services_sizes_threads_by_the_cpu_limit(
    image: str, scorer_env: dict[str, str], cpus: tuple[str, ...], threads: int
) -> None:
    result = docker_run(image, "check", env=scorer_env, docker_args=("--network", "host", *cpus))
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    loaded = [e for e in json_events(result.stdout) if e["event"] == "model.loaded"]
    assert [e["predict_threads"] for e in loaded] == [threads]


def test_check_unknown_model_is_permanent(image: str, scorer_env: dict[str, str]) -> None:
    env = {**scorer_env, "SCORER_MODEL_NAME": "no-such-model"}
    result = docker_run(image, "check", env=env, docker_args=("--network", "host"))
    assert result.returncode == 2, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    json_events(result.stdout)
