"""`helm lint --strict` accepts every environment's values and every CI scenario."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.helm import CI_VALUES, ENV_VALUES, Helm, HelmError

SCENARIOS = [pytest.param(path, id=f"env-{env}") for env, path in ENV_VALUES.items()] + [
    pytest.param(path, id=f"ci-{path.name}") for path in CI_VALUES
]


def test_there_are_scenarios() -> None:
    assert {p.name for p in CI_VALUES} >= {
        "alias-values.yaml",
        "stage-values.yaml",
        "version-gate-values.yaml",
        "digest-values.yaml",
        "existing-serviceaccount-values.yaml",
        "dev-secret-values.yaml",
        "snapshots-values.yaml",
        "backfill-values.yaml",
    }
    assert all(path.is_file() for path in ENV_VALUES.values())


@pytest.mark.parametrize("values", SCENARIOS)
def test_lint_strict(helm: Helm, values: Path) -> None:
    out = helm.lint(values)
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out
    assert "[ERROR]" not in out


def test_lint_fails_without_required_values(helm: Helm) -> None:
    with pytest.raises(HelmError, match=r"at '/model/name': minLength") as excinfo:
        helm.lint()
    assert "1 chart(s) failed" in str(excinfo.value)
