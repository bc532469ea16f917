"""Logs are JSON lines with no secret in them."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from scorer import logs


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "INFO", stream)
    yield stream
    logs._secrets.clear()
    structlog.reset_defaults()


def fail(message: str) -> None:
    raise RuntimeError(message)


def fail_holding(rows: list[str]) -> None:
    """Fail in a frame whose locals hold row data."""
    raise RuntimeError(f"postgresql://scorer:pa55word@db/x{'' if rows else '?'}")


def test_url_passwords_are_masked() -> None:
    assert (
        logs.redact("postgresql://scorer:s3cr3t@db:5432/x") == "postgresql://scorer:***@db:5432/x"
    )
    assert (
        logs.redact("http://user:tok@mlflow/api and more") == "http://user:***@mlflow/api and more"
    )
    assert logs.redact("no url here") == "no url here"


def test_registered_secrets_vanish_from_every_field(
    json_logs: io.StringIO,
) -> None:
    logs.register_secret("pa55word")
    log = structlog.get_logger()
    log.info("connect", dsn="host=db password=pa55word", nested={"list": ["x pa55word y"]})
    try:
        fail("login failed for pa55word")
    except RuntimeError:
        log.exception("boom")
    out = json_logs.getvalue()
    assert "pa55word" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["dsn"] == "host=db password=***"
    assert lines[0]["nested"] == {"list": ["x *** y"]}
    assert lines[1]["event"] == "boom"
    assert "exception" in lines[1]


def test_level_filters_and_timestamps(json_logs: io.StringIO) -> None:
    logs.configure("json", "WARNING", json_logs)
    log = structlog.get_logger()
    log.info("hidden")
    log.warning("shown", rows=3)
    (line,) = [json.loads(x) for x in json_logs.getvalue().splitlines()]
    assert line["event"] == "shown"
    assert line["level"] == "warning"
    assert line["timestamp"].endswith("Z")


def test_a_password_that_is_also_the_scheme_or_host_does_not_garble_the_url(
    json_logs: io.StringIO,
) -> None:
    logs.register_secret("postgres")
    url = "postgresql://scorer:postgres@postgres:5432/scoring"
    assert logs.redact(url) == "postgresql://scorer:***@postgres:5432/scoring"
    assert logs.redact(f"failed at {url}: postgres said no") == (
        "failed at postgresql://scorer:***@postgres:5432/scoring: *** said no"
    )
    logs.register_secret("5432")
    assert logs.redact("postgresql://u:5432@db:5432/x") == "postgresql://u:***@db:5432/x"


def test_url_passwords_are_masked_by_structure_whatever_they_hold() -> None:
    assert logs.redact("postgresql://u:p@ss:w0rd@db/x") == "postgresql://u:***@db/x"
    assert logs.redact("postgresql://u:@db/x") == "postgresql://u:***@db/x"
    assert (
        logs.redact("see 'http://u:tok@mlflow:5000/api'.") == "see 'http://u:***@mlflow:5000/api'."
    )
    assert logs.redact("http://[::1/broken") == "http://[::1/broken"


def test_registered_secrets_are_masked_in_a_url_path_and_query() -> None:
    logs.register_secret("hunter2")
    assert logs.redact("postgresql://db/x?password=hunter2") == "postgresql://db/x?password=***"
    logs._secrets.clear()


def test_tracebacks_are_masked_and_carry_no_locals(json_logs: io.StringIO) -> None:
    logs.register_secret("pa55word")
    try:
        fail_holding(["row-value-123"])
    except RuntimeError as exc:
        structlog.get_logger().error("boom", exc_info=exc)
    out = json_logs.getvalue()
    assert "pa55word" not in out
    (line,) = [json.loads(x) for x in out.splitlines()]
    frames = line["exception"][0]["frames"]
    assert all("locals" not in frame or not frame["locals"] for frame in frames)
    assert "row-value-123" not in out
    assert line["exception"][0]["exc_value"] == "postgresql://scorer:***@db/x"
