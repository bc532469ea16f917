"""NOTES.txt, as `helm install --dry-run=client` prints it."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.helm import BASE_VALUES, CHART, CI_VALUES, ENV_VALUES, Helm, merged

CI = {path.name.removesuffix("-values.yaml"): path for path in CI_VALUES}
VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


def test_notes_alias(helm: Helm, kubeconfig: Path) -> None:
    notes = helm.notes(kubeconfig, values=BASE_VALUES, release="nightly", namespace="ml")
    lines = notes.splitlines()
    assert (
        "  kubectl create job --from=cronjob/nightly-scorer nightly-scorer-manual-$(date +%s) -n ml"
    ) in lines
    assert '  Schedule: "0 3 * * *"' in lines
    assert "  Model:    churn alias=champion" in lines
    assert "  Image:    scorer:0.1.0" in lines
    assert "  Features: features.customers" in lines


def test_notes_prod(helm: Helm, kubeconfig: Path) -> None:
    notes = helm.notes(kubeconfig, ENV_VALUES["prod"], release="scorer", namespace="scorer")
    lines = notes.splitlines()
    assert (
        "  kubectl create job --from=cronjob/scorer scorer-manual-$(date +%s) -n scorer"
    ) in lines
    assert '  Schedule: "0 3 * * *" (Etc/UTC)' in lines
    assert "  Model:    churn version=7" in lines
    assert "  Image:    registry.example.com/ml/scorer@sha256:" + "3f1a9c0e" in notes
    assert "WARNING" not in notes


def test_notes_gate_digest_and_dev_secret(helm: Helm, kubeconfig: Path) -> None:
    gate = helm.notes(kubeconfig, CI["version-gate"], release="eu", namespace="scoring")
    assert "  Model:    Churn Model/EU version=12 (gate: alias champion)" in gate.splitlines()
    assert (
        "kubectl create job --from=cronjob/eu-scorer eu-scorer-manual-$(date +%s) -n scoring"
        in gate
    )

    digest = helm.notes(kubeconfig, CI["digest"])
    image = "registry.example.com/ml/scorer@sha256:" + "0123456789abcdef" * 4
    assert f"  Image:    {image}" in digest.splitlines()

    dev = helm.notes(kubeconfig, CI["dev-secret"], release="dev", namespace="scorer-dev")
    assert (
        "kubectl create job --from=cronjob/scorer-dev scorer-dev-manual-$(date +%s) -n scorer-dev"
        in dev
    )
    assert "WARNING: database.createSecret=true" in dev


def test_notes_manual_job_name_fits_a_label(helm: Helm, kubeconfig: Path) -> None:
    """Job names become 63-character label values: a long full name is cut for the one-off run."""
    fullname = "a-very-long-scorer-release-name-for-some-model-x"  # 48 characters
    notes = helm.notes(kubeconfig, values=merged(BASE_VALUES, {"fullnameOverride": fullname}))
    (line,) = [ln for ln in notes.splitlines() if "kubectl create job" in ln]
    prefix = f"  kubectl create job --from=cronjob/{fullname} "
    assert line.startswith(prefix)
    job_name = line.removeprefix(prefix).removesuffix(" -n ml")
    assert job_name == f"{fullname[:45]}-manual-$(date +%s)"
    assert len(job_name.replace("$(date +%s)", "1700000000")) <= 63


def test_notes_tell_how_to_backfill(helm: Helm, kubeconfig: Path) -> None:
    """The one command that runs a backfill from the installed release."""
    notes = helm.notes(kubeconfig, CI["snapshots"], release="nightly", namespace="ml")
    assert (
        f"  helm upgrade nightly <chart> -n ml --version {VERSION} --reuse-values"
        " --set backfill.enabled=true"
        " --set backfill.from=<first snapshot> --set backfill.to=<last snapshot>"
    ) in notes.splitlines()
    assert "  (or --set 'backfill.snapshots={A,B,C}' instead of from/to)" in notes.splitlines()

    # Without a snapshot column the command sets one.
    base = helm.notes(kubeconfig, values=BASE_VALUES)
    (line,) = [ln for ln in base.splitlines() if "backfill.enabled=true" in ln]
    assert " --reuse-values --set features.snapshotColumn=<column> --set backfill.enabled" in line


def test_notes_follow_a_running_backfill(helm: Helm, kubeconfig: Path) -> None:
    notes = helm.notes(kubeconfig, CI["backfill"], release="nightly", namespace="ml")
    lines = notes.splitlines()
    (job_line,) = [ln for ln in lines if ln.startswith("Backfill: Job ml/nightly-scorer-backfill-")]
    job = job_line.split()[2].removeprefix("ml/")
    assert job_line.endswith("runs `python -m scorer backfill --from 2026-10-01 --to 2026-10-31`,")
    assert f"  kubectl logs -n ml -f job/{job}" in lines
    assert (
        f"  helm upgrade nightly <chart> -n ml --version {VERSION} --reuse-values"
        " --set backfill.enabled=false"
    ) in lines
    assert "backfill.enabled=true" not in notes


def test_notes_name_the_migration_job(helm: Helm, kubeconfig: Path) -> None:
    hook = helm.notes(kubeconfig, values=BASE_VALUES, release="nightly", namespace="ml")
    assert "migrated by the hook Job nightly-scorer-migrate before" in hook
    assert "kubectl logs -n ml job/nightly-scorer-migrate)" in hook
    plain = helm.template(CI["migrate-plain"]).migrate_job["metadata"]["name"]
    notes = helm.notes(kubeconfig, CI["migrate-plain"], release="scorer", namespace="ml")
    assert f"  kubectl wait -n ml --for=condition=complete job/{plain} --timeout=5m" in notes
    off = merged(BASE_VALUES, {"migrate": {"enabled": False}})
    assert "Schema:" not in helm.notes(kubeconfig, values=off, release="nightly")
