"""prune, runs, show and explain at the command line, without a database: their settings,
bad input exiting 2 naming the setting, and the text helpers of the history commands."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from scorer import cli, logs
from scorer.config import PruneSettings
from scorer.errors import DatabaseUnreachableError
from scorer.ops import history, retention

URL = "postgresql://scorer:Sup3r-s3cret-pw@db.example:5432/scoring"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("SCORER_", "MLFLOW_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SCORER_DATABASE_URL", URL)
    yield
    logs._secrets.clear()
    structlog.reset_defaults()


@pytest.fixture
def pruned(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace prune's work: record the settings it was given."""
    seen: dict[str, Any] = {}

    def record(settings: PruneSettings, dry_run: bool) -> int:
        seen["settings"], seen["dry_run"] = settings, dry_run
        return 0

    monkeypatch.setattr(retention, "main", record)
    return seen


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    code = cli.main(list(argv))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.startswith("{")], out


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--keep-runs", "7"], {}, (7, None, None)),
        (["--keep-days", "14"], {}, (None, 14, None)),
        ([], {"SCORER_KEEP_RUNS": "3", "SCORER_KEEP_DAYS": "0"}, (3, 0, None)),
        (
            ["--keep-runs", "9", "--model-name", "churn"],
            {"SCORER_KEEP_RUNS": "2"},
            (9, None, "churn"),
        ),
        (["--keep-runs", "1", "--model", "churn"], {}, (1, None, "churn")),  # --model abbreviates
    ],
)
def test_prune_settings_from_flags_and_variables(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pruned: dict[str, Any],
    argv: list[str],
    env: dict[str, str],
    expected: tuple[int | None, int | None, str | None],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    code, _, _ = main(capsys, "prune", *argv)
    assert code == 0
    settings = pruned["settings"]
    assert (settings.keep_runs, settings.keep_days, settings.model_name) == expected
    assert settings.prune_lock_timeout_seconds == 2.0
    assert pruned["dry_run"] is False


def test_dry_run_is_passed_on(capsys: pytest.CaptureFixture[str], pruned: dict[str, Any]) -> None:
    assert main(capsys, "prune", "--keep-runs", "3", "--dry-run")[0] == 0
    assert pruned["dry_run"] is True


@pytest.mark.parametrize(
    ("variable", "flag", "value"),
    [
        ("SCORER_KEEP_RUNS", "--keep-runs", "0"),
        ("SCORER_KEEP_RUNS", "--keep-runs", "-3"),
        ("SCORER_KEEP_RUNS", "--keep-runs", "seven"),
        ("SCORER_KEEP_DAYS", "--keep-days", "-1"),
        ("SCORER_KEEP_DAYS", "--keep-days", "1.5"),
        ("SCORER_PRUNE_LOCK_TIMEOUT_SECONDS", "--prune-lock-timeout-seconds", "0"),
        ("SCORER_PRUNE_LOCK_TIMEOUT_SECONDS", "--prune-lock-timeout-seconds", "600"),
    ],
)
@pytest.mark.parametrize("via", ["variable", "flag"])
def test_bad_retention_settings_exit_2_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pruned: dict[str, Any],
    variable: str,
    flag: str,
    value: str,
    via: str,
) -> None:
    other = "--keep-days" if variable == "SCORER_KEEP_RUNS" else "--keep-runs"
    argv = ["prune", other, "5"]
    if via == "variable":
        monkeypatch.setenv(variable, value)
    else:
        argv += [flag, value]
    code, lines, out = main(capsys, *argv)
    assert code == 2
    assert "settings" not in pruned  # nothing ran
    assert (lines[-1]["event"], lines[-1]["kind"], lines[-1]["exit_code"]) == (
        "prune.failed",
        "config",
        2,
    )
    assert variable in lines[-1]["error"]
    assert flag in lines[-1]["error"]
    assert "Sup3r-s3cret-pw" not in out


def test_prune_without_a_rule_exits_2_naming_both(
    capsys: pytest.CaptureFixture[str], pruned: dict[str, Any]
) -> None:
    code, lines, _ = main(capsys, "prune")
    assert code == 2
    assert "settings" not in pruned
    for name in ("SCORER_KEEP_RUNS", "--keep-runs", "SCORER_KEEP_DAYS", "--keep-days"):
        assert name in lines[-1]["error"]


def test_runs_with_a_limit_below_one_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = main(capsys, "runs", "--limit", "0")
    assert code == 2
    assert (lines[-1]["event"], lines[-1]["kind"]) == ("runs.failed", "config")
    assert "--limit" in lines[-1]["error"]


def test_the_history_commands_need_no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def connect(url: str) -> Any:
        seen.append(url)
        raise DatabaseUnreachableError("stand-in: the settings were enough to get this far")

    monkeypatch.setattr("scorer.postgres.db.connect", connect)
    for argv in (["runs"], ["show", "r-1"], ["explain", "42"], ["prune", "--keep-runs", "1"]):
        assert cli.main(argv) == 1  # database_unreachable: no config error came first
    assert seen == [URL] * 4


@pytest.mark.parametrize("command", ["prune", "runs", "show", "explain"])
def test_help_names_each_setting(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[SCORER_DATABASE_URL, required]" in text
    assert "MLFLOW_TRACKING_URI" not in text
    if command == "prune":
        for variable in ("SCORER_KEEP_RUNS", "SCORER_KEEP_DAYS", "SCORER_MODEL_NAME"):
            assert variable in text
        assert "--dry-run" in text
    else:
        assert "--json" in text


# --- text helpers -------------------------------------------------------------------------


def test_rebin_sums_the_fine_bins() -> None:
    fine = [1] * 1000
    assert history.rebin(fine, 20) == [50] * 20
    assert history.rebin(fine, 10) == [100] * 10
    with pytest.raises(ValueError, match="into 30"):
        history.rebin(fine, 30)


@pytest.mark.parametrize(
    ("seconds", "text"), [(1.94, "1.9s"), (125, "2m05s"), (3720, "1h02m"), (None, "—")]
)
def test_durations(seconds: float | None, text: str) -> None:
    assert history._duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5s"), (90, "1m"), (7200, "2h"), (3 * 86_400 + 5, "3d")]
)
def test_ages(seconds: float, text: str) -> None:
    assert history._age(seconds) == text


@pytest.mark.parametrize(
    ("entity", "kind", "value"),
    [
        ("42", "bigint", 42),
        ("-7", "bigint", -7),
        ("9223372036854775808", "bigint", None),  # beyond bigint
        ("7590-VHVEG", "bigint", None),
        ("7590-VHVEG", "text", "7590-VHVEG"),
        ("42", "text", "42"),
        ("00000000-0000-0000-0000-00000000002a", "uuid", "00000000-0000-0000-0000-00000000002a"),
        ("42", "uuid", None),
    ],
)
def test_an_entity_id_is_searched_in_the_parents_its_form_fits(
    entity: str, kind: str, value: object
) -> None:
    assert history._as_kind(entity, kind) == value


def test_runs_table_aligns_and_shows_a_dash_for_missing_figures() -> None:
    record = {
        "run_id": "r-1", "status": "running", "trigger": "manual", "model_name": "churn",
        "model_selector": "version:7", "model_version": 7, "snapshot": "2026-11-30",
        "rows_read": None, "rows_rejected": None, "score_mean": None, "score_psi": None,
        "realized_auc": None, "duration_seconds": None, "age_seconds": 30.0,
    }  # fmt: skip
    header, line = history.render_runs([record]).splitlines()
    assert line.split() == [
        "r-1", "running", "manual", "churn", "version:7", "→", "7", "2026-11-30",
        "—", "—", "—", "—", "—", "—", "30s",
    ]  # fmt: skip
    assert header.index("AGE") + len("AGE") == len(header)  # right-aligned column ends flush
