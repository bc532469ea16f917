"""kube-score finds nothing in the rendered chart beyond the choices the chart makes on purpose."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.helm import CHART, CI_VALUES, ENV_VALUES, Helm, require_tool

SCENARIOS = [pytest.param(path, id=f"env-{env}") for env, path in ENV_VALUES.items()] + [
    pytest.param(path, id=f"ci-{path.name}") for path in CI_VALUES
]

# Findings the chart accepts, each for a reason (README, "Security"):
ACCEPTED = {
    # A CPU limit only throttles a batch run (CFS quota); the request and a memory limit are set.
    "(scorer) CPU limit is not set",
    "(scorer-check) CPU limit is not set",  # the `helm test` pod: the same container, `check`
    # IfNotPresent suits immutable tags and kind, where the image is loaded into the node; pin
    # image.digest (and pullPolicy Always, as ci/digest does) where a registry is used.
    "(scorer) ImagePullPolicy is not set to Always",
    "(scorer-check) ImagePullPolicy is not set to Always",
    # The pod listens on nothing; its egress (PostgreSQL, MLflow, DNS) is the cluster's to know,
    # so the chart's NetworkPolicy is opt-in (networkPolicy.enabled; prod turns it on).
    "The pod does not have a matching NetworkPolicy",
}
# ci/version-gate sets startingDeadlineSeconds to null on purpose (the chart's default is 600).
ACCEPTED_IN = {
    "version-gate-values.yaml": {"The CronJob should have startingDeadlineSeconds configured"}
}


@pytest.mark.parametrize("values", SCENARIOS)
def test_kube_score(helm: Helm, values: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(helm.run("template", "scorer", str(CHART), "-n", "ml", "-f", str(values)))
    proc = subprocess.run(
        [str(require_tool("kube-score")), "score", "--output-format", "ci", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert any(line.startswith("[OK]") for line in lines), proc.stdout + proc.stderr
    findings = {
        line.split(": ", 1)[1] for line in lines if line.startswith(("[CRITICAL]", "[WARNING]"))
    }
    assert findings - ACCEPTED - ACCEPTED_IN.get(values.name, set()) == set()
    if values.name == "prod.yaml":
        assert "The pod does not have a matching NetworkPolicy" not in findings
