"""docs/concepts.md lists every failure kind with its exit code, as the code defines them."""

from __future__ import annotations

import re
from pathlib import Path

import scorer.run.shard_plan  # noqa: F401 - defines RunFailedError, a kind of its own
from scorer.errors import InternalError, PermanentError, RetryableError, ScorerError

CONCEPTS = Path(__file__).resolve().parents[2] / "docs" / "concepts.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| ([012]) \|", re.MULTILINE)
BASES = {ScorerError, RetryableError, PermanentError}


def kinds() -> dict[str, int]:
    """Every concrete kind the scorer can fail with, and its exit code."""
    found: dict[str, int] = {}
    todo = [ScorerError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls not in BASES:
            found[cls.kind] = cls.exit_code
    return found


def test_every_kind_is_documented_with_its_exit_code() -> None:
    documented = {kind: int(code) for kind, code in ROW.findall(CONCEPTS.read_text())}
    assert documented == kinds()


def test_the_audit_holds() -> None:
    """What no retry cures is exit 2: TLS, credentials and a missing database among them."""
    codes = kinds()
    assert InternalError.kind in codes
    for kind in ("database_tls", "registry_tls", "database_auth", "registry_auth", "config"):
        assert codes[kind] == 2, kind
