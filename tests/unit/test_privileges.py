"""``scorer grant``'s SQL and ``--dry-run`` (no database: the SQL is printed, nothing connects)."""

from __future__ import annotations

import pytest

from scorer import cli
from scorer.errors import ConfigError
from scorer.postgres import privileges


def test_the_runtime_role_gets_no_delete_on_run_rows_and_nothing_it_could_destroy() -> None:
    sql = privileges.grant_sql("scoring", "nightly", "readers")
    runtime = [line for line in sql if line.endswith('TO "nightly";')]
    assert 'GRANT SELECT, INSERT, UPDATE ON TABLE "scoring"."scoring_runs" TO "nightly";' in runtime
    for forbidden in ('DELETE ON TABLE "scoring"."scoring_runs"', "TRUNCATE", "ALL", "CREATE"):
        assert not any(forbidden in line for line in sql), forbidden
    assert not any("predictions" in line and "SELECT ON" not in line for line in sql)


def test_the_reader_role_gets_the_consumer_views_only() -> None:
    sql = privileges.grant_sql("scoring", "nightly", "readers")
    reader = [line for line in sql if line.endswith('TO "readers";')]
    assert reader == [
        'GRANT USAGE ON SCHEMA "scoring" TO "readers";',
        *(f'GRANT SELECT ON TABLE "scoring"."{view}" TO "readers";' for view in privileges.VIEWS),
    ]
    assert len(privileges.VIEWS) == 6


def test_role_names_are_quoted_as_they_are() -> None:
    sql = privileges.grant_sql("Scoring", 'Nightly "ETL"', "readers-eu")
    assert sql[0] == 'GRANT USAGE ON SCHEMA "Scoring" TO "Nightly ""ETL""";'
    assert sql[-1].endswith('TO "readers-eu";')
    with pytest.raises(ConfigError, match="not a usable role name"):
        privileges.grant_sql("scoring", "x" * 64, "readers")


def test_dry_run_prints_the_sql_and_needs_no_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SCORER_DATABASE_URL", "SCORER_TARGET_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    argv = ["grant", "--runtime", "nightly", "--reader", "readers", "--dry-run"]
    assert cli.main([*argv, "--target-schema", "ml"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == privileges.grant_sql("ml", "nightly", "readers")


def test_grant_without_a_database_url_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SCORER_DATABASE_URL", raising=False)
    assert cli.main(["grant", "--runtime", "nightly", "--reader", "readers"]) == 2
    assert "SCORER_DATABASE_URL" in capsys.readouterr().out


def test_grant_needs_both_roles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["grant", "--runtime", "nightly", "--dry-run"])
    assert exited.value.code == 2
    assert "--reader" in capsys.readouterr().err
