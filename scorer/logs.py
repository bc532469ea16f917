"""structlog set-up: JSON lines on stdout, secrets scrubbed from every event."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO
from urllib.parse import urlsplit

import structlog

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_MASK = "***"
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Make ``value`` (e.g. the database password) be masked in every later log line."""
    if value:
        _secrets.add(value)


def redact(text: str) -> str:
    """Mask URL passwords and registered secrets in ``text``.

    A URL's password is masked by the URL's structure (whatever it is); registered secrets are
    masked everywhere else, but never inside a URL's scheme, host or port, so a password such as
    ``postgres`` cannot garble ``postgresql://db:5432``.
    """
    parts: list[str] = []
    end = 0
    for match in _URL.finditer(text):
        parts.append(_mask_secrets(text[end : match.start()]))
        parts.append(_redact_url(match.group()))
        end = match.end()
    parts.append(_mask_secrets(text[end:]))
    return "".join(parts)


def _mask_secrets(text: str) -> str:
    for secret in _secrets:
        text = text.replace(secret, _MASK)
    return text


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: no structure to trust
        return _mask_secrets(url)
    head = url[: url.index("://") + 3]
    netloc = url[len(head) : len(head) + len(parts.netloc)]
    rest = url[len(head) + len(netloc) :]
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{_mask_secrets(user)}{colon and ':' + _MASK}@{hostport}"
    return f"{head}{netloc}{_mask_secrets(rest)}"


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
    """Configure structlog for the process; lines go to ``stream`` (stdout by default).

    Tracebacks are rendered to plain data *before* the redaction step (a dict for JSON, text
    for the console), so they are scrubbed like every other field; frame locals are left out,
    since they can hold row data and connection parameters.
    """
    renderer: Any
    tracebacks: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        tracebacks = structlog.processors.format_exc_info
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            tracebacks,
            redact_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
