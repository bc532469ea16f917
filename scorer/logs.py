"""structlog set-up: JSON lines on stdout, secrets scrubbed from every event."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?=@)")
_MASK = "***"
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Make ``value`` (e.g. the database password) be masked in every later log line."""
    if value:
        _secrets.add(value)


def redact(text: str) -> str:
    """Mask URL passwords and registered secrets in ``text``."""
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + _MASK, text)
    for secret in _secrets:
        text = text.replace(secret, _MASK)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def redact_event(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: scrub secrets from every field, including rendered exceptions."""
    return {key: _redact_value(value) for key, value in event_dict.items()}


def configure(log_format: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure structlog once for the process; lines go to ``stream`` (stdout by default)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks
            if log_format == "json"
            else structlog.processors.StackInfoRenderer(),
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
