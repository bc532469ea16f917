"""values.yaml is documented in place and README.md's values table is in step with it."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import yaml

from tests.support.helm import CHART, ROOT, require_tool

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
README = (CHART / "README.md").read_text()
ROW = re.compile(r"^\| ([A-Za-z0-9_.]+) \| ([^|]*) \| (.*) \| (.*) \|$", re.MULTILINE)
VALUES_TABLE = README.split("\n## Values\n", 1)[1]
DOCUMENTED = {m.group(1): m.group(4) for m in ROW.finditer(VALUES_TABLE) if m.group(1) != "Key"}


def value_at(path: str) -> Any:
    node: Any = VALUES
    for part in path.split("."):
        assert isinstance(node, dict), path
        assert part in node, path
        node = node[part]
    return node


def test_every_top_level_value_is_in_the_readme() -> None:
    covered = {key.split(".", 1)[0] for key in DOCUMENTED}
    assert set(VALUES) == covered


def test_every_row_is_a_value_with_a_description() -> None:
    assert len(DOCUMENTED) > 40
    for key, description in DOCUMENTED.items():
        value_at(key)
        assert description.strip(), f"{key} has no `# --` description"


def test_every_leaf_value_has_a_row() -> None:
    """Maps without their own `# --` line must have every child documented."""

    def leaves(node: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in DOCUMENTED:
                continue
            assert isinstance(value, dict), f"{path} is not documented"
            assert value, f"{path} is an empty map without a description"
            out += leaves(value, f"{path}.")
        return out

    assert leaves(VALUES, "") == []


def test_readme_mentions_the_deadline_warning_and_one_off_run() -> None:
    assert "shorter than the schedule interval" in DOCUMENTED["activeDeadlineSeconds"]
    assert "kubectl create job --from=cronjob/<fullname> <fullname>-manual-$(date +%s)" in README


def test_readme_documents_the_backfill() -> None:
    assert "immutable" in DOCUMENTED["backfill.enabled"]
    assert "helm upgrade <release> <chart> -n <namespace> --reuse-values" in README
    assert "--set backfill.enabled=true --set backfill.from=2026-10-01" in README


def test_readme_is_what_helm_docs_generates() -> None:
    out = subprocess.run(
        [
            str(require_tool("helm-docs")),
            "--dry-run",
            "--chart-search-root",
            str(ROOT / "charts"),
            "--log-level",
            "error",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert out.strip() == README.strip(), (
        "README.md is stale: run helm-docs --chart-search-root charts"
    )
