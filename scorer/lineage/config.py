"""Whether OpenLineage is configured, checked without importing its client, and the checks
of the URLs it is given."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scorer import logs
from scorer.errors import ConfigError

DEFAULT_NAMESPACE = "scorer"
"""OpenLineage job namespace when ``OPENLINEAGE_NAMESPACE`` is unset."""
_SECRET_WORDS = ("APIKEY", "API_KEY", "TOKEN", "SECRET", "PASSWORD", "AUTH", "CLIENTSECRET")


@dataclass(frozen=True)
class OpenLineageConfig:
    """OpenLineage is configured (the client's own way), with this job namespace."""

    namespace: str


def openlineage_config(environ: Mapping[str, str] | None = None) -> OpenLineageConfig | None:
    """Whether OpenLineage is configured, checked without importing the client.

    Configured means, as the client reads it: ``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``
    variables, ``OPENLINEAGE_CONFIG``, or an ``openlineage.yml`` in the working directory or
    ``~/.openlineage``; ``OPENLINEAGE_DISABLED=true`` turns it off. Unconfigured, nothing is
    sent (the client's own fallback would print events on stdout, among the JSON log lines).
    Raises ``ConfigError`` for a malformed ``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG`` or
    ``OPENLINEAGE_NAMESPACE``; values are never echoed.
    """
    env = os.environ if environ is None else environ
    if env.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return None
    url = env.get("OPENLINEAGE_URL", "")
    if url:
        check_http_url(url, "OPENLINEAGE_URL")
    config_file = env.get("OPENLINEAGE_CONFIG", "")
    if config_file and not os.access(config_file, os.R_OK):
        raise ConfigError("OPENLINEAGE_CONFIG names no readable file (an openlineage.yml)")
    configured = bool(
        url
        or config_file
        or any(key.startswith("OPENLINEAGE__TRANSPORT") for key in env)
        or (Path.cwd() / "openlineage.yml").is_file()
        or _home_config().is_file()
    )
    if not configured:
        return None
    namespace = env.get("OPENLINEAGE_NAMESPACE", DEFAULT_NAMESPACE)
    if not namespace.strip():
        raise ConfigError("OPENLINEAGE_NAMESPACE is blank: unset it (default scorer) or name one")
    _register_secrets(env)
    return OpenLineageConfig(namespace.strip())


def _home_config() -> Path:
    """``~/.openlineage/openlineage.yml``, as the client looks for it; a uid without a home
    directory (a pod run as 10001 with no HOME) has none."""
    try:
        return Path.home() / ".openlineage" / "openlineage.yml"
    except (RuntimeError, KeyError):
        return Path("/nonexistent/openlineage.yml")


def check_http_url(url: str, where: str) -> None:
    """Raise ``ConfigError`` unless ``url`` is ``http(s)://host[:port][/path]``."""
    try:
        parts = urlsplit(url.strip())
        port_ok = parts.port is None or parts.port > 0  # .port raises on a malformed port
    except ValueError:
        port_ok = False
    else:
        if parts.scheme in ("http", "https") and parts.hostname and port_ok:
            return
    raise ConfigError(f"{where} is not an http(s) URL: give http(s)://host[:port][/path]")


def _register_secrets(env: Mapping[str, str]) -> None:
    """Mask the OpenLineage API key and other credentials in every later log line."""
    for key, value in env.items():
        name = key.upper().replace("__", "_")
        if not key.startswith("OPENLINEAGE") or not any(word in name for word in _SECRET_WORDS):
            continue
        logs.register_secret(value)
        try:  # OPENLINEAGE__TRANSPORT__AUTH='{"type": "api_key", "apiKey": "..."}'
            parsed = json.loads(value)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            for item in parsed.values():
                if isinstance(item, str) and item not in ("api_key", "jwt", "oauth2"):
                    logs.register_secret(item)
