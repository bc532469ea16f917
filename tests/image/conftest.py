"""Build the container image once per session, offline, with ``hack/image.sh``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("SCORER_TEST_IMAGE", "scorer:test")
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


@pytest.fixture(scope="session")
def image() -> str:
    """The image tag, built (or brought up to date) by ``hack/image.sh``."""
    reason = docker_available()
    if reason is not None:
        pytest.skip(f"no Docker engine: {reason} (start one with hack/docker-engine.sh)")
    build = subprocess.run(
        ["bash", str(REPO / "hack" / "image.sh"), IMAGE],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(
            f"hack/image.sh {IMAGE} failed ({build.returncode}):\n"
            f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}",
            pytrace=False,
        )
    return IMAGE
