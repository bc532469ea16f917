"""Build the container images once per session, offline, with ``hack/image.sh``: the lean
default and a variant carrying a model's own libraries (scikit-learn, lightgbm)."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("SCORER_TEST_IMAGE", "scorer:test")
EXTRAS_IMAGE = os.environ.get("SCORER_TEST_EXTRAS_IMAGE", "scorer:test-extras")
# The model libraries of the variant: scikit-learn and lightgbm, and skops, the format
# mlflow.sklearn saves models in by default (MLflow 3), so loading one needs it.
EXTRA_LIBRARIES = ("scikit-learn", "lightgbm", "skops")
BUILD_TIMEOUT_S = 40 * 60  # cold: debootstrap, wheel downloads, dependency layer


def docker_available() -> str | None:
    """``None`` if a Docker engine answers, else the reason it does not."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
    )
    if info.returncode != 0:
        return f"docker info failed: {(info.stderr or info.stdout).strip()[-300:]}"
    return None


def build(tag: str, *options: str) -> str:
    """``hack/image.sh [OPTIONS] TAG``; the test fails with the build's output if it fails."""
    reason = docker_available()
    if reason is not None:
        pytest.skip(f"no Docker engine: {reason} (start one with hack/docker-engine.sh)")
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "image.sh"), *options, tag],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"hack/image.sh {' '.join(options)} {tag} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return tag


def pinned(distribution: str) -> str:
    """``name==version`` of the host's copy (models trained here load in the image), else the
    bare name."""
    try:
        return f"{distribution}=={metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


@pytest.fixture(scope="session")
def image() -> str:
    """The lean default image, built (or brought up to date) by ``hack/image.sh``."""
    return build(IMAGE)


@pytest.fixture(scope="session")
def extras_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The variant with ``EXTRA_LIBRARIES``, built from a requirements file shaped like the
    one MLflow logs with a model (``hack/image.sh --requirements``: comments and the ``mlflow``
    line skipped), pinned to the versions installed here so that models these tests save load
    in the image."""
    lines = ["# as MLflow writes it", pinned("mlflow"), *map(pinned, EXTRA_LIBRARIES)]
    requirements = tmp_path_factory.mktemp("extras") / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n")
    return build(EXTRAS_IMAGE, "--requirements", str(requirements))
