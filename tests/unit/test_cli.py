"""The command line: flags map to settings, every bad setting exits 2 naming its variable, one
failure path, and a help text a user can work from. Runs ``scorer.cli.main`` in-process (and
``python -m scorer`` once, in a child, for the handler it installs before its imports)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import structlog

from scorer import cli, logs
from scorer.config import DatabaseSettings, RunSettings, env_name, flag_name
from scorer.errors import LockBusyError
from scorer.run import runner, shadow
from scorer.run.single import SingleRun

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Sup3r-s3cret-pw"
BASE_ENV = {
    "SCORER_DATABASE_URL": f"postgresql://scorer:{PASSWORD}@db.example:5432/scoring",
    "MLFLOW_TRACKING_URI": "http://mlflow.example:5000",
    "SCORER_MODEL_NAME": "churn",
    "SCORER_MODEL_ALIAS": "champion",
    "SCORER_FEATURES_TABLE": "features.customers",
    "SCORER_ENTITY_COLUMN": "customer_id",
}
# A valid value for every flag and the setting it must produce.
FLAG_VALUES: dict[str, tuple[str, object]] = {
    "log_format": ("console", "console"),
    "log_level": ("debug", "DEBUG"),
    "database_url": ("postgresql://u:p@flag.example/d", "postgresql://u:p@flag.example/d"),
    "target_schema": ("scoring_flag", "scoring_flag"),
    "tracking_uri": ("http://flag.example:5000", "http://flag.example:5000"),
    "model_name": ("churn-flag", "churn-flag"),
    "model_alias": ("challenger", "challenger"),
    "model_stage": ("staging", "Staging"),
    "model_version": ("7", 7),
    "require_alias": ("champion", "champion"),
    "shadow_alias": ("challenger", "challenger"),
    "shadow_version": ("8", 8),
    "compare_top_share": ("0.2", 0.2),
    "require_stage": ("Production", "Production"),
    "features_table": ("flag.customers", "flag.customers"),
    "entity_column": ("flag_id", "flag_id"),
    "snapshot_column": ("as_of", "as_of"),
    "snapshot": ("2026-10-31", "2026-10-31"),
    "score_kind": ("raw", "raw"),
    "positive_class": ("churned", "churned"),
    "threshold": ("0.3", 0.3),
    "max_score_psi": ("0.4", 0.4),
    "min_rows_ratio": ("0.5", 0.5),
    "max_null_share_increase": ("0.1", 0.1),
    "max_feature_psi": ("0.3", 0.3),
    "quality_override": ("model v8 promoted", "model v8 promoted"),
    "run_id": ("nightly-1", "nightly-1"),
    "chunk_rows": ("5000000", 5_000_000),
    "predict_threads": ("1", 1),
    "max_rejected_ratio": ("0.05", 0.05),
    "reasons": ("3", 3),
    "reasons_method": ("shapley", "shapley"),
    "lock_wait_seconds": ("30", 30.0),
    "trigger": ("manual", "manual"),
    "k8s_namespace": ("scoring", "scoring"),
    "k8s_pod": ("pod-1", "pod-1"),
    "k8s_node": ("node-1", "node-1"),
    "k8s_job": ("job-1", "job-1"),
    "k8s_cronjob": ("cron-1", "cron-1"),
    "image": ("scorer:1", "scorer:1"),
    "mlflow_experiment": ("scoring/churn-nightly", "scoring/churn-nightly"),
    "mlflow_record": ("false", False),
    "shards": ("64", 64),  # with SCORER_SHARD_INDEX set (a shard count needs an index)
    "shard_index": ("0", 0),
    "shard_timeout_seconds": ("60", 60.0),
    "max_snapshot_age": ("1d12h", timedelta(hours=36)),
    "pushgateway_url": ("http://pushgateway.monitoring:9091", "http://pushgateway.monitoring:9091"),
    "pushgateway_timeout_seconds": ("2.5", 2.5),
    "release": ("churn", "churn"),
}
# A malformed value for every setting that can be malformed.
BAD_VALUES: dict[str, str] = {
    "log_format": "xml",
    "log_level": "trace",
    "database_url": "mysql://root:pw@db/x",
    "target_schema": "scoring-prod",
    "tracking_uri": " ",
    "model_name": "",
    "model_alias": "champ ion",
    "model_stage": "Live",
    "model_version": "seven",
    "require_alias": "no way",
    "shadow_alias": "chall enger",
    "shadow_version": "eight",
    "compare_top_share": "0",
    "require_stage": "Prod",
    "features_table": "a.b.c",
    "entity_column": "1st",
    "snapshot_column": "snap-shot",
    "score_kind": "label",
    "threshold": "1.5",
    "max_score_psi": "-0.1",
    "min_rows_ratio": "1.5",
    "max_null_share_increase": "2",
    "max_feature_psi": "-0.1",
    "quality_override": "",
    "run_id": "a/b",
    "chunk_rows": "5000001",
    "predict_threads": "0",
    "max_rejected_ratio": "2",
    "reasons": "1001",
    "reasons_method": "exact",
    "lock_wait_seconds": "-1",
    "trigger": "cron",
    "mlflow_experiment": " ",
    "mlflow_record": "maybe",
    "shards": "65",
    "shard_index": "-1",
    "shard_timeout_seconds": "0",
    "max_snapshot_age": "36 hours",
    "pushgateway_url": "pushgateway:9091",
    "pushgateway_timeout_seconds": "61",
}
FREE_TEXT = {
    "snapshot",
    "positive_class",
    "k8s_namespace",
    "k8s_pod",
    "k8s_node",
    "k8s_job",
    "k8s_cronjob",
    "image",
    "release",
}
REQUIRED = [name for name, info in RunSettings.model_fields.items() if info.is_required()]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A clean environment, a scratch working directory; logging and signals restored."""
    for key in list(os.environ):
        if key.startswith(("SCORER_", "MLFLOW_")):
            monkeypatch.delenv(key)
    for key, value in (
        ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
        ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
        ("MLFLOW_HTTP_REQUEST_TIMEOUT", "60"),
    ):
        monkeypatch.setenv(key, value)  # what main sets, undone after the test
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)
    logs._secrets.clear()
    structlog.reset_defaults()


def run_main(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
) -> tuple[int, list[dict[str, Any]], str]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code = cli.main(argv)
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], out


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the commands' work: record the settings they were given."""
    seen: dict[str, Any] = {}

    def record(settings: Any, *_: Any) -> int:
        seen["settings"] = settings
        return 0

    monkeypatch.setattr(runner, "run", record)
    monkeypatch.setattr(runner, "check", record)
    monkeypatch.setattr(shadow, "run", record)
    monkeypatch.setattr(cli, "migrate", record)
    return seen


def test_the_tables_cover_every_setting() -> None:
    assert set(FLAG_VALUES) == set(RunSettings.model_fields)
    assert set(BAD_VALUES) | FREE_TEXT == set(RunSettings.model_fields)
    assert not set(BAD_VALUES) & FREE_TEXT


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("field", sorted(FLAG_VALUES))
def test_each_flag_sets_its_setting_over_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    captured: dict[str, Any],
    command: str,
    field: str,
) -> None:
    value, expected = FLAG_VALUES[field]
    env = dict(BASE_ENV)
    if field in ("model_stage", "model_version"):
        del env["SCORER_MODEL_ALIAS"]  # one selector: the flag's
    if field == "threshold":
        env["SCORER_THRESHOLD"] = "0.9"  # the flag must win over the variable
    if field == "shards":
        env["SCORER_SHARD_INDEX"] = "63"
    code, _, _ = run_main(monkeypatch, capsys, [command, flag_name(field), value], env)
    assert code == 0
    settings = captured["settings"]
    assert isinstance(settings, RunSettings)
    actual = getattr(settings, field)
    assert (actual.get_secret_value() if field == "database_url" else actual) == expected


@pytest.mark.parametrize("field", sorted(DatabaseSettings.model_fields))
def test_each_migrate_flag_sets_its_setting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    captured: dict[str, Any],
    field: str,
) -> None:
    value, expected = FLAG_VALUES[field]
    env = {"SCORER_DATABASE_URL": BASE_ENV["SCORER_DATABASE_URL"]}
    code, _, _ = run_main(monkeypatch, capsys, ["migrate", flag_name(field), value], env)
    assert code == 0
    actual = getattr(captured["settings"], field)
    assert (actual.get_secret_value() if field == "database_url" else actual) == expected


def test_tracking_uri_variable_and_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], captured: dict[str, Any]
) -> None:
    run_main(monkeypatch, capsys, ["check"], BASE_ENV)
    assert captured["settings"].tracking_uri == "http://mlflow.example:5000"
    run_main(monkeypatch, capsys, ["check", "--tracking-uri", "http://other:1"], BASE_ENV)
    assert captured["settings"].tracking_uri == "http://other:1"


@pytest.mark.parametrize("via", ["variable", "flag"])
@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_each_bad_setting_exits_2_naming_its_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    captured: dict[str, Any],
    field: str,
    via: str,
) -> None:
    env = dict(BASE_ENV)
    argv = ["run"]
    if via == "variable":
        env[env_name(field)] = BAD_VALUES[field]
    else:
        argv += [flag_name(field), BAD_VALUES[field]]
    code, lines, out = run_main(monkeypatch, capsys, argv, env)
    assert code == 2
    assert "settings" not in captured  # nothing ran
    assert lines[-1]["event"] == "run.failed"
    assert (lines[-1]["kind"], lines[-1]["exit_code"]) == ("config", 2)
    assert env_name(field) in lines[-1]["error"]
    assert PASSWORD not in out
    if field == "database_url":
        assert "root:pw" not in out  # the bad value is never echoed


@pytest.mark.parametrize("field", sorted(DatabaseSettings.model_fields))
def test_migrate_bad_settings_exit_2_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    env = {
        "SCORER_DATABASE_URL": BASE_ENV["SCORER_DATABASE_URL"],
        env_name(field): BAD_VALUES[field],
    }
    code, lines, _ = run_main(monkeypatch, capsys, ["migrate"], env)
    assert code == 2
    assert lines[-1]["event"] == "migrate.failed"
    assert lines[-1]["kind"] == "config"
    assert env_name(field) in lines[-1]["error"]


def test_log_level_trace_is_a_config_error_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"SCORER_DATABASE_URL": BASE_ENV["SCORER_DATABASE_URL"], "SCORER_LOG_LEVEL": "trace"}
    code, lines, out = run_main(monkeypatch, capsys, ["migrate"], env)
    assert code == 2
    assert "KeyError" not in out
    assert "SCORER_LOG_LEVEL" in lines[-1]["error"]


@pytest.mark.parametrize("field", REQUIRED)
def test_each_missing_required_setting_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != env_name(field)}
    code, lines, _ = run_main(monkeypatch, capsys, ["check"], env)
    assert code == 2
    assert env_name(field) in lines[-1]["error"]
    assert flag_name(field) in lines[-1]["error"]


def test_no_registry_configured_says_so_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "MLFLOW_TRACKING_URI"}
    code, lines, _ = run_main(monkeypatch, capsys, ["run"], env)
    assert code == 2
    assert lines[-1]["kind"] == "config"
    assert "no model registry configured" in lines[-1]["error"]
    assert "MLFLOW_TRACKING_URI or pass --tracking-uri" in lines[-1]["error"]
    assert list(tmp_path.iterdir()) == []  # no ./mlflow.db


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgresql://scorer:p@ss@db/scoring", "unencoded '@'"),
        ("postgresql://scorer:100%sure@db/scoring", "percent-encode"),
    ],
)
def test_an_unencoded_password_gets_the_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, hint: str
) -> None:
    code, lines, out = run_main(monkeypatch, capsys, ["migrate"], {"SCORER_DATABASE_URL": url})
    assert code == 2
    assert hint in lines[-1]["error"]
    assert "%40" in lines[-1]["error"]
    assert "p@ss" not in out
    assert "100%sure" not in out


def test_an_internal_error_exits_2_with_its_traceback_and_no_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_settings: Any) -> int:
        url = BASE_ENV["SCORER_DATABASE_URL"]
        raise TypeError(f"a bug while holding {url} and {PASSWORD}")

    monkeypatch.setattr(runner, "check", broken)
    code, lines, out = run_main(monkeypatch, capsys, ["check"], BASE_ENV)
    assert code == 2
    last = lines[-1]
    assert (last["event"], last["kind"], last["exit_code"]) == ("check.failed", "internal", 2)
    assert "TypeError" in last["error"]
    frames = json.dumps(last["exception"])
    assert "broken" in frames  # the traceback reaches the failing frame
    assert PASSWORD not in out
    assert "postgresql://scorer:***@db.example:5432/scoring" in out


def test_an_internal_error_during_run_logs_the_traceback_then_the_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_self: Any) -> None:
        raise ZeroDivisionError(f"division by zero near {PASSWORD}")

    monkeypatch.setattr(SingleRun, "execute", broken)
    code, lines, out = run_main(monkeypatch, capsys, ["run"], BASE_ENV)
    assert code == 2
    assert [line["event"] for line in lines[-2:]] == ["run.internal_error", "run.failed"]
    assert "ZeroDivisionError" in json.dumps(lines[-2]["exception"])
    assert (lines[-1]["kind"], lines[-1]["exit_code"]) == ("internal", 2)
    assert [line["event"] for line in lines].count("run.failed") == 1
    assert PASSWORD not in out


def test_console_tracebacks_are_masked_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_settings: Any) -> int:
        raise TypeError(f"a bug near {PASSWORD}")

    monkeypatch.setattr(runner, "check", broken)
    code, _, out = run_main(monkeypatch, capsys, ["check", "--log-format", "console"], BASE_ENV)
    assert code == 2
    assert "Traceback (most recent call last)" in out
    assert "TypeError: a bug near ***" in out
    assert PASSWORD not in out


def test_run_returns_its_exit_code_having_logged_one_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def busy(_self: Any) -> None:
        raise LockBusyError("another run is scoring churn")

    monkeypatch.setattr(SingleRun, "execute", busy)
    code, lines, _ = run_main(monkeypatch, capsys, ["run"], BASE_ENV)
    assert code == 1
    assert [line["event"] for line in lines] == ["run.failed"]
    assert lines[-1]["kind"] == "lock_busy"
    assert "exception" not in lines[-1]  # a known failure: its message is the news


def test_run_help_is_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for field in RunSettings.model_fields:
        assert flag_name(field) in text
        assert env_name(field) in text
    assert "[SCORER_MODEL_NAME, required]" in text
    assert "[MLFLOW_TRACKING_URI, required]" in text
    assert "[SCORER_CHUNK_ROWS, default 50000]" in text
    assert "1 to 5,000,000" in text
    assert "exactly one of --model-alias, --model-stage, --model-version" in text
    assert "exit codes:" in text
    for code in ("0 success", "1 a failure a retry may cure", "2 a failure no retry can cure"):
        assert code in text


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"scorer {version('scorer')}"


def test_python_m_scorer_handles_sigterm_before_its_imports() -> None:
    # As PID 1 in a container an unhandled SIGTERM is ignored: the handler must be in place
    # before the first heavy import (pydantic, through scorer.config), not only once main runs.
    probe = """
import runpy, signal, sys
seen = []
def hook(event, args):
    if event == "import" and args[0] == "pydantic" and not seen:
        seen.append(signal.getsignal(signal.SIGTERM))
sys.addaudithook(hook)
sys.argv = ["scorer", "--help"]
try:
    runpy.run_module("scorer", run_name="__main__")
except SystemExit:
    pass
print("default" if seen[0] in (signal.SIG_DFL, None) else "handled", file=sys.stderr)
"""
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "handled"
