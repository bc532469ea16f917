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
