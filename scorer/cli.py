"""Command line: ``python -m scorer {migrate,check,run,demo}``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from contextlib import closing
from types import FrameType

import structlog

from scorer import __version__, logs
from scorer.config import DatabaseSettings, RunSettings, load
from scorer.errors import EXIT_OK, ConfigError, ScorerError, TerminatedError

log = structlog.get_logger("scorer")

_COMMANDS = {
    "migrate": "create or upgrade the tables and the latest_predictions view (idempotent)",
    "check": "verify settings, model, schema and feature relation; write nothing",
    "run": "score the feature relation and publish the predictions atomically",
    "backfill": "score older snapshots, each as its own run (resumable)",
    "demo": "train, register and score a churn model against an embedded PostgreSQL",
}
_EPILOG = """\
settings come from the environment (SCORER_*, MLFLOW_TRACKING_URI); each has a flag too.
exit codes: 0 success; 1 a failure a retry may cure; 2 a failure no retry can cure."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorer",
        description="Batch-score a registered MLflow model over PostgreSQL features.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scorer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in _COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == "demo":
            sub.add_argument("--rows", type=int, default=10_000, help="customers to score")
            continue
        if name == "backfill":
            span = sub.add_mutually_exclusive_group(required=True)
            span.add_argument("--from", dest="start", help="first snapshot (inclusive)")
            span.add_argument("--snapshots", help="comma-separated snapshots: A,B,C")
            sub.add_argument("--to", dest="end", help="last snapshot (inclusive), with --from")
        kind = DatabaseSettings if name == "migrate" else RunSettings
        for field_name, info in kind.model_fields.items():
            sub.add_argument(
                "--" + field_name.replace("_", "-"),
                dest=field_name,
                default=None,
                help=info.description,
            )
    return parser


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise TerminatedError(f"terminated by signal {signal.Signals(signum).name}")


def _configure_mlflow_http() -> None:
    """Fail over in seconds, not minutes, when the registry is down (the Job retries)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit code."""
    args = _parser().parse_args(argv)
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key not in ("command", "rows", "start", "end", "snapshots") and value is not None
    }
    logs.configure(
        overrides.get("log_format") or os.environ.get("SCORER_LOG_FORMAT", "json"),
        (overrides.get("log_level") or os.environ.get("SCORER_LOG_LEVEL", "INFO")).upper(),
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    _configure_mlflow_http()
    try:
        return _dispatch(args.command, overrides, args)
    except ScorerError as exc:
        if not exc.logged:
            log.error(  # noqa: TRY400 - the traceback is noise; the message is the news
                f"{args.command}.failed", error=str(exc), kind=exc.kind, exit_code=exc.exit_code
            )
        return exc.exit_code
    finally:
        structlog.contextvars.clear_contextvars()


def _dispatch(command: str, overrides: dict[str, str], args: argparse.Namespace) -> int:
    if command == "demo":
        try:
            import pgserver  # noqa: F401, PLC0415 - demo-only dependency
        except ImportError:
            raise ConfigError("the demo needs its extra: pip install 'scorer[demo]'") from None
        from scorer import demo  # noqa: PLC0415

        return demo.main(rows=args.rows)
    if command == "migrate":
        return _migrate(load(DatabaseSettings, **overrides))
    settings = _run_settings(overrides)
    if command == "backfill":
        return _backfill(settings, args)
    from scorer import pipeline  # noqa: PLC0415 - keep --help and migrate light

    return pipeline.check(settings) if command == "check" else pipeline.run(settings)


def _backfill(settings: RunSettings, args: argparse.Namespace) -> int:
    from scorer import backfill  # noqa: PLC0415

    if args.snapshots is not None:
        listed = [part.strip() for part in args.snapshots.split(",") if part.strip()]
        if not listed:
            raise ConfigError("--snapshots names no snapshot (give A,B,C)")
        return backfill.main(settings, None, listed)
    if args.end is None:
        raise ConfigError("--from needs --to: backfill --from 2026-10-01 --to 2026-10-31")
    return backfill.main(settings, (args.start, args.end), ())


def _run_settings(overrides: dict[str, str]) -> RunSettings:
    settings = load(RunSettings, **overrides)
    logs.register_secret(_password(settings))
    structlog.contextvars.bind_contextvars(run_id=settings.run_id, model_name=settings.model_name)
    return settings


def _password(settings: DatabaseSettings) -> str | None:
    from scorer.db import password_of  # noqa: PLC0415

    return password_of(settings.database_url.get_secret_value())


def _migrate(settings: DatabaseSettings) -> int:
    from scorer import db, schema  # noqa: PLC0415

    logs.register_secret(_password(settings))
    url = settings.database_url.get_secret_value()
    with closing(db.connect(url)) as conn:
        applied = schema.migrate(conn, settings.target_schema)
    log.info(
        "migrate.done",
        schema=settings.target_schema,
        applied=applied,
        version=schema.SCHEMA_VERSION,
        database=logs.redact(url),
    )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
