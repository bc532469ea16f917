"""skaffold.yaml builds the one image and installs the chart with each environment's values."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.helm import CHART, ENV_VALUES, ROOT, Helm, Rendered, require_tool

SKAFFOLD_YAML = ROOT / "skaffold.yaml"
CONFIG: dict[str, Any] = yaml.safe_load(SKAFFOLD_YAML.read_text())
DOCKERFILE = ROOT / "Dockerfile"
# The script that makes the Dockerfile's base image offline.
BASE_IMAGE_SCRIPT = ROOT / "hack" / "python-base-image.sh"
BASE_IMAGE_TIMEOUT_S = 30 * 60  # cold: debootstrap from the Debian mirrors


def dockerfile_base_images() -> set[str]:
    """The images the Dockerfile's FROM lines name, with the ARG defaults filled in."""
    text = DOCKERFILE.read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE))
    images = {
        re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], ref)
        for ref in re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    }
    return images - stages


def docker_has(image: str) -> bool:
    inspect = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, timeout=60, check=False
    )
    return inspect.returncode == 0


def release(config: dict[str, Any]) -> dict[str, Any]:
    (only,) = config["deploy"]["helm"]["releases"]
    return only


def with_profile(name: str) -> dict[str, Any]:
    """The config with a profile's JSON patches applied (the subset of RFC 6902 used here)."""
    config = yaml.safe_load(SKAFFOLD_YAML.read_text())
    (profile,) = [p for p in config["profiles"] if p["name"] == name]
    for patch in profile.get("patches", []):
        *parents, leaf = patch["path"].strip("/").split("/")
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert patch["op"] in {"add", "replace"}
        if patch["op"] == "replace":
            assert leaf in node, patch["path"]
        node[leaf] = patch["value"]
    return config


def test_one_artifact_and_its_templates_in_step() -> None:
    assert CONFIG["apiVersion"].startswith("skaffold/v4beta")
    assert CONFIG["kind"] == "Config"
    build = CONFIG["build"]
    (artifact,) = build["artifacts"]
    assert artifact == {"image": "scorer", "context": ".", "docker": {"dockerfile": "Dockerfile"}}
    assert build["tagPolicy"] == {"inputDigest": {}}
    assert build["local"]["push"] is False
    rel = release(CONFIG)
    assert (ROOT / rel["chartPath"]).resolve() == CHART
    name = artifact["image"]
    assert rel["setValueTemplates"] == {
        "image.repository": f"{{{{.IMAGE_REPO_{name}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{name}}}}}",
        "image.digest": f"{{{{.IMAGE_DIGEST_{name}}}}}",  # wins over the digest values pin
    }


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_profile_uses_the_environment_values(env: str) -> None:
    config = with_profile(env)
    rel = release(config)
    assert [ROOT / f for f in rel["valuesFiles"]] == [ENV_VALUES[env]]
    assert (
        rel["namespace"]
        == {"dev": "scorer-dev", "staging": "scorer-staging", "prod": "scorer"}[env]
    )
    assert config["build"]["local"]["push"] is (env != "dev")


def test_dev_profile_is_for_kind() -> None:
    (dev,) = [p for p in CONFIG["profiles"] if p["name"] == "dev"]
    assert dev["activation"] == [{"kubeContext": "kind-.*"}]
    assert release(with_profile("dev"))["setValues"] == {"image.pullPolicy": "IfNotPresent"}


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_what_skaffold_passes_renders(helm: Helm, env: str) -> None:
    """The values skaffold would pass (templates filled as skaffold fills them) pass the schema."""
    rel = release(with_profile(env))
    sets = [f"{k}={v}" for k, v in rel.get("setValues", {}).items()]
    sets += ["image.repository=scorer", "image.tag=4f9c2d1e8a7b", "image.digest="]  # not pushed
    rendered = helm.template(
        *(ROOT / f for f in rel["valuesFiles"]),
        sets=sets,
        release=rel["name"],
        namespace=rel["namespace"],
    )
    assert rendered.container["image"] == "scorer:4f9c2d1e8a7b"
    assert rendered.cronjob["metadata"]["namespace"] == rel["namespace"]


@pytest.fixture(scope="module")
def skaffold(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Run skaffold with the built helm on PATH and a scratch HOME (no global config written)."""
    binary = require_tool("skaffold")
    home = tmp_path_factory.mktemp("skaffold-home")
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{helm.binary.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_INTERACTIVE": "false",
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }

    def run(*args: str) -> str:
        proc = subprocess.run(
            [str(binary), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
            check=False,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return run


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_skaffold_diagnose_accepts_the_file(skaffold: Any, env: str) -> None:
    effective = yaml.safe_load(skaffold("diagnose", "--yaml-only", "-p", env))
    assert effective["apiVersion"] == CONFIG["apiVersion"]
    rel = release(effective)
    assert [Path(f) for f in rel["valuesFiles"]] == [ENV_VALUES[env]]
    assert effective["build"]["tagPolicy"] == {"inputDigest": {}}


@pytest.mark.parametrize(
    ("env", "selector"),
    [
        ("dev", ("SCORER_MODEL_ALIAS", "candidate")),
        ("staging", ("SCORER_MODEL_ALIAS", "champion")),
        ("prod", ("SCORER_MODEL_VERSION", "7")),
    ],
)
def test_skaffold_renders_offline(skaffold: Any, env: str, selector: tuple[str, str]) -> None:
    """No cluster, no registry: skaffold fills IMAGE_REPO_scorer / IMAGE_TAG_scorer for helm."""
    out = skaffold("render", "--offline=true", "--digest-source=tag", "--tag=t3st", "-p", env)
    rendered = Rendered([doc for doc in yaml.safe_load_all(out) if doc])
    namespace = release(with_profile(env))["namespace"]
    assert rendered.cronjob["metadata"]["namespace"] == namespace
    assert rendered.container["image"] == "scorer:t3st"
    assert rendered.env_value("SCORER_IMAGE") == "scorer:t3st"
    assert rendered.env_value(selector[0]) == selector[1]
    assert rendered.container["imagePullPolicy"] == "IfNotPresent"


@pytest.fixture(scope="module")
def base_images() -> set[str]:
    """The Dockerfile's base images, in the local Docker engine: skaffold's inputDigest tag
    hashes their config (for ONBUILD), read from the engine when no registry answers. Offline,
    the base image script makes them (cached: seconds when warm)."""
    images = dockerfile_base_images()
    assert images, DOCKERFILE
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed (skaffold reads the base image from it)")
    info = subprocess.run(
        ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
    )
    if info.returncode != 0:
        pytest.fail(f"no Docker engine: {info.stderr.strip()[-300:]} (run hack/docker-engine.sh)")
    if not all(docker_has(image) for image in images):
        build = subprocess.run(
            ["bash", str(BASE_IMAGE_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=BASE_IMAGE_TIMEOUT_S,
            check=False,
        )
        if build.returncode != 0:
            pytest.fail(
                f"{BASE_IMAGE_SCRIPT.name} failed ({build.returncode}):\n{build.stderr[-3000:]}",
                pytrace=False,
            )
    missing = sorted(image for image in images if not docker_has(image))
    assert missing == [], f"still not in the Docker engine: {missing}"
    return images


def test_skaffold_tags_with_the_input_digest(skaffold: Any, base_images: set[str]) -> None:
    """Offline, with the base image in the local engine, the tag is a digest of the inputs."""
    assert "python:3.11-slim-bookworm" in base_images
    out = skaffold("render", "--offline=true", "--digest-source=tag", "-p", "prod")
    rendered = Rendered([doc for doc in yaml.safe_load_all(out) if doc])
    image = rendered.container["image"]
    assert re.fullmatch(r"scorer:[0-9a-f]{64}", image), image
    # Same inputs, same tag.
    again = skaffold("render", "--offline=true", "--digest-source=tag", "-p", "prod")
    assert Rendered([doc for doc in yaml.safe_load_all(again) if doc]).container["image"] == image
