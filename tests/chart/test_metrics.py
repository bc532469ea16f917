"""The chart's metrics values: the push wired to the scorer, the PrometheusRule (checked and
unit-tested with the real promtool), the Grafana dashboard, all off by default."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from scorer.run import gate, metrics
from tests.support.helm import BASE_VALUES, CHART, ROOT, Helm, HelmError, Rendered, merged
from tests.support.services import CACHE

HERE = Path(__file__).parent
RULES_TEST = HERE / "prometheus_rules_test.yaml"
MONITORING_DOC = ROOT / "docs" / "monitoring.md"
ALERTS = (
    "ScorerRunFailed",
    "ScorerNoRecentSuccess",
    "ScorerQualityGateRefused",
    "ScorerScoreDrift",
)
# What the rules read besides the pushed metrics: kube-state-metrics.
KUBE_METRICS = {
    "kube_job_status_start_time",
    "kube_job_failed",
    "kube_job_owner",
    "kube_cronjob_status_last_successful_time",
    "kube_cronjob_created",
}
METRIC_NAME = re.compile(r"\b((?:scorer|kube)_[a-z_]+)\b")
ON = {
    "metrics": {
        "pushgateway": {"url": "http://pushgateway.monitoring.svc:9091"},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    }
}


def promtool() -> Path:
    """The promtool ``hack/prometheus.sh`` builds; a failure (never a skip) without it."""
    binary = CACHE / "bin" / "promtool"
    if not binary.is_file():
        pytest.fail("promtool not found: run `bash hack/prometheus.sh`", pytrace=False)
    return binary


def render(helm: Helm, extra: dict[str, Any] | None = None) -> Rendered:
    """The chart for release ``churn`` in namespace ``scoring`` (CronJob ``churn-scorer``)."""
    return helm.template(
        values=merged(merged(BASE_VALUES, ON), extra or {}), release="churn", namespace="scoring"
    )


def rules_dir(helm: Helm, tmp_path: Path) -> Path:
    """The rendered rule's groups as a Prometheus rule file, beside the promtool tests."""
    spec = render(helm).one("PrometheusRule")["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    return tmp_path


def rules(helm: Helm, extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    rendered = render(helm, extra).one("PrometheusRule")
    return {rule["alert"]: rule for group in rendered["spec"]["groups"] for rule in group["rules"]}


def dashboard(rendered: Rendered) -> dict[str, Any]:
    (config_map,) = [doc for doc in rendered.all("ConfigMap") if "scorer.json" in doc["data"]]
    loaded: dict[str, Any] = json.loads(config_map["data"]["scorer.json"])
    return loaded


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    exprs = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def test_everything_is_off_by_default(helm: Helm) -> None:
    rendered = helm.template(values=BASE_VALUES)
    assert "PrometheusRule" not in rendered.kinds()
    assert "ConfigMap" not in rendered.kinds()
    assert "SCORER_PUSHGATEWAY_URL" not in rendered.env
    assert rendered.env_value("SCORER_RELEASE") == "scorer"  # a label of the metrics, if pushed


def test_the_push_is_wired_and_the_network_policy_lets_it_out(helm: Helm) -> None:
    rendered = render(
        helm,
        {
            "metrics": {"pushgateway": {"timeoutSeconds": 2.5}},
            "networkPolicy": {
                "enabled": True,
                "pushgateway": {
                    "to": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
                },
            },
        },
    )
    assert rendered.env_value("SCORER_PUSHGATEWAY_URL") == "http://pushgateway.monitoring.svc:9091"
    assert rendered.env_value("SCORER_PUSHGATEWAY_TIMEOUT_SECONDS") == "2.5"
    assert rendered.env_value("SCORER_RELEASE") == "churn"
    egress = rendered.one("NetworkPolicy")["spec"]["egress"]
    assert {
        "ports": [{"port": 9091, "protocol": "TCP"}],
        "to": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    } in egress
    without = helm.template(values=merged(BASE_VALUES, {"networkPolicy": {"enabled": True}}))
    ports = [rule["ports"] for rule in without.one("NetworkPolicy")["spec"]["egress"]]
    assert [{"port": 9091, "protocol": "TCP"}] not in ports  # no Pushgateway, no rule


def test_the_rule_has_its_labels_and_every_alert_names_the_command_and_runbook(
    helm: Helm,
) -> None:
    extra = {
        "metrics": {
            "prometheusRule": {
                "labels": {"release": "kube-prometheus-stack"},
                "alertLabels": {"team": "ml-platform"},
            }
        }
    }
    rule = render(helm, extra).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "churn"
    found = rules(helm, extra)
    assert tuple(found) == ALERTS
    anchors = {
        "#" + re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in MONITORING_DOC.read_text().splitlines()
        if line.startswith("### ")
    }
    for name, alert in found.items():
        assert alert["labels"]["team"] == "ml-platform", name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "scorer show " in annotations["description"], name
        runbook, _, anchor = annotations["runbook_url"].partition("#")
        assert runbook == "docs/monitoring.md"
        assert f"#{anchor}" in anchors, f"{name}: no runbook section #{anchor}"


def test_the_thresholds_come_from_values_and_the_drift_level_is_the_gates(helm: Helm) -> None:
    assert yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["scoreDriftPsi"] == (
        gate.Limits(0.25, 0.8, 0.2).warn_score_psi
    )
    found = rules(helm, {"metrics": {"maxSuccessAgeHours": 50, "scoreDriftPsi": 0.2}})
    assert "> 180000" in found["ScorerNoRecentSuccess"]["expr"]
    assert "> 0.2" in found["ScorerScoreDrift"]["expr"]
    assert 'release="churn"' in found["ScorerRunFailed"]["expr"]
    assert 'owner_name="churn-scorer"' in found["ScorerRunFailed"]["expr"]


def test_the_rules_read_only_what_the_scorer_pushes_and_kube_state_metrics(helm: Helm) -> None:
    for name, alert in rules(helm).items():
        named = set(METRIC_NAME.findall(alert["expr"]))
        assert named <= set(metrics.METRICS) | KUBE_METRICS, (name, named)


def test_promtool_checks_the_rendered_rule(helm: Helm, tmp_path: Path) -> None:
    directory = rules_dir(helm, tmp_path)
    result = subprocess.run(
        [str(promtool()), "check", "rules", str(directory / "rules.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_unit_tests_fire_and_spare_each_alert(helm: Helm, tmp_path: Path) -> None:
    directory = rules_dir(helm, tmp_path)
    tested = yaml.safe_load(RULES_TEST.read_text())["tests"]
    for alert in ALERTS:  # every alert has series that fire it and series that do not
        cases = [
            case
            for test in tested
            for case in test.get("alert_rule_test", [])
            if case["alertname"] == alert
        ]
        assert any(case["exp_alerts"] for case in cases), alert
        assert any(not case["exp_alerts"] for case in cases), alert
    result = subprocess.run(
        [str(promtool()), "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_config_map_carries_the_sidecar_label(helm: Helm) -> None:
    default = render(helm)
    (config_map,) = default.all("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    custom = render(
        helm,
        {
            "metrics": {
                "grafanaDashboard": {
                    "label": "grafana.io/dashboard",
                    "labelValue": "scoring",
                    "annotations": {"grafana_folder": "Scoring"},
                }
            }
        },
    )
    (config_map,) = custom.all("ConfigMap")
    assert config_map["metadata"]["labels"]["grafana.io/dashboard"] == "scoring"
    assert "grafana_dashboard" not in config_map["metadata"]["labels"]
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Scoring"}


def test_the_dashboard_is_a_valid_dashboard_of_pushed_metrics(helm: Helm) -> None:
    board = dashboard(render(helm))
    assert board["uid"]
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "namespace", "model"}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert {"id", "type", "title", "gridPos", "targets", "datasource"} <= set(panel)
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    used: set[str] = set()
    for expr in queries(board):
        named = set(METRIC_NAME.findall(expr))
        assert named, expr
        assert named <= set(metrics.METRICS), expr
        used |= named
    # Per model: runs by outcome, rows scored and rejected, duration, score mean and PSI, the
    # time since the last success.
    assert {
        "scorer_last_run_timestamp_seconds",
        "scorer_last_run_outcome",
        "scorer_last_run_rows_scored",
        "scorer_last_run_rows_rejected",
        "scorer_last_run_duration_seconds",
        "scorer_last_run_score_mean",
        "scorer_last_run_score_psi",
        "scorer_last_success_timestamp_seconds",
    } <= used


def test_bad_metrics_values_are_refused(helm: Helm) -> None:
    for bad in (
        {"metrics": {"pushgateway": {"url": "pushgateway:9091"}}},
        {"metrics": {"pushgateway": {"url": "http://user:pw@pushgateway:9091"}}},
        {"metrics": {"maxSuccessAgeHours": 0}},
        {"metrics": {"prometheusRule": {"enable": True}}},
    ):
        with pytest.raises(HelmError):
            helm.template(values=merged(BASE_VALUES, bad))
