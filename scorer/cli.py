"""Command line: ``python -m scorer {migrate,grant,check,run,backfill,prune,evaluate,runs,show,
explain,compare,demo}``.

``main`` is the one place where a failure becomes an exit code: ``runner.run`` returns its
own (having written its summary line); every other command's ``ScorerError`` is logged here
as ``<command>.failed`` and mapped to its code, and any other exception is classified first
(``failures.classify``: an internal error, exit 2, logged with its traceback).
"""

from __future__ import annotations

import argparse
import os
import signal
import typing
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from types import FrameType
from typing import TYPE_CHECKING

import structlog
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from scorer import __version__, logs
from scorer.config import (
    CompareSettings,
    DatabaseSettings,
    EvaluateSettings,
    LogSettings,
    PruneSettings,
    RunSettings,
    SchemaSettings,
    env_name,
    flag_name,
    load,
)
from scorer.errors import EXIT_OK, ConfigError, InternalError, ScorerError, TerminationSignal

if TYPE_CHECKING:
    from scorer.postgres import db

log = structlog.get_logger("scorer")

_COMMANDS = {
    "migrate": "create or upgrade the tables and the latest_predictions view (idempotent)",
    "grant": "grant the runtime and reader roles what they need (run as the migration role)",
    "check": "verify settings, model (and shadow challenger), schema and feature relation;"
    " write nothing",
    "run": "score the feature relation and publish the predictions atomically",
    "backfill": "score older snapshots, each as its own run (resumable)",
    "prune": "drop old runs' partitions (keep the last K runs and/or D days); rows stay",
    "evaluate": "join past runs to the outcomes that landed; record realized AUC, precision at k"
    " and calibration",
    "runs": "list recent runs: status, version, snapshot, rows, mean score, PSI, age",
    "show": "one run's lineage, counts, quality checks and score histogram",
    "explain": "one entity's scores across the kept runs, with each run's version and snapshot",
    "compare": "compare two runs of one snapshot: rank correlation, top-k overlap, PSI, labels",
    "demo": "train, register and score a churn model against an embedded PostgreSQL",
}
_SELECTOR_RULE = """\
--model-name and exactly one of --model-alias, --model-stage, --model-version;
at most one promotion gate, --require-alias or --require-stage"""
# Flags of run/check/migrate in the order and groups their help shows; a settings field not
# named here lands in "other".
_GROUPS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "model": (
        _SELECTOR_RULE,
        (
            "tracking_uri",
            "model_name",
            "model_alias",
            "model_stage",
            "model_version",
            "require_alias",
            "require_stage",
        ),
    ),
    "features": (
        None,
        ("features_table", "entity_column", "snapshot_column", "snapshot", "max_snapshot_age"),
    ),
    "scores": (
        None,
        (
            "score_kind",
            "positive_class",
            "threshold",
            "chunk_rows",
            "predict_threads",
            "max_rejected_ratio",
        ),
    ),
    "database": (None, ("database_url", "target_schema")),
    "run": (
        None,
        (
            "run_id",
            "lock_wait_seconds",
            "trigger",
            "shards",
            "shard_index",
            "shard_timeout_seconds",
        ),
    ),
    "logging": (None, ("log_format", "log_level")),
    "lineage": (
        "set by the chart from the downward API",
        ("k8s_namespace", "k8s_pod", "k8s_node", "k8s_job", "k8s_cronjob", "image", "release"),
    ),
    "metrics": (
        "pushed to a Prometheus Pushgateway when a run ends (best effort)",
        ("pushgateway_url", "pushgateway_timeout_seconds"),
    ),
}
# Flags of prune, in the order its help shows them.
_PRUNE_GROUPS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "retention": (
        "a published run is kept when either rule keeps it; each model's latest run and the"
        " newest run of every kept snapshot always stay",
        ("model_name", "keep_runs", "keep_days", "prune_lock_timeout_seconds"),
    ),
    "evaluation": (
        "with an outcome table set, runs not yet evaluated (at the horizon, if set) stay",
        ("outcomes_table", "outcome_horizon_days"),
    ),
    "database": _GROUPS["database"],
    "logging": _GROUPS["logging"],
}
# Flags of evaluate, in the order its help shows them.
_EVALUATE_GROUPS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "outcomes": (
        "an outcome counts for a run when its time lies in (snapshot, snapshot + horizon]",
        (
            "outcomes_table",
            "outcome_entity_column",
            "outcome_column",
            "outcome_time_column",
            "outcome_horizon_days",
        ),
    ),
    "evaluation": (
        None,
        ("model_name", "compare_top_share", "min_realized_auc", "tracking_uri"),
    ),
    "database": _GROUPS["database"],
    "logging": _GROUPS["logging"],
}
_HISTORY = {"runs": "", "show": " RUN_ID", "explain": " ENTITY_ID"}  # read-only commands
_ARGUMENTS = {
    **_HISTORY,
    "compare": " RUN_A RUN_B",
    "grant": " --runtime ROLE --reader ROLE",
}  # for the usage lines
# Arguments, not settings.
_NOT_SETTINGS = (
    "command", "rows", "start", "end", "snapshots", "dry_run", "model", "limit", "json",
    "show_run_id", "entity_id", "bins", "runtime", "reader", "reevaluate", "run_a", "run_b",
)  # fmt: skip
_DEFAULT_TEXT = {
    "run_id": "default run-<UTC time>-<hex>",
    "model_alias": "exactly one selector",
    "model_stage": "exactly one selector",
    "model_version": "exactly one selector",
}
_EXIT_CODES = """\
exit codes:
  0  success (or this run id had already succeeded: nothing to do)
  1  a failure a retry may cure: database or registry unreachable, connection to the
     database lost, timeout, SIGTERM/SIGINT, another run of the model and snapshot
     (or another prune of the schema) holds the lock
  2  a failure no retry can cure: bad or contradictory settings, no registry configured,
     model/alias/stage/version not found, registry or database credentials refused,
     database missing, promotion gate not met, feature relation vs signature mismatch,
     bad data or duplicate entity ids, rejected rows above the ratio, schema not migrated,
     a privilege the role lacks (database_privilege: named, nothing written), a
     transaction pooler (database_pooler), a snapshot older than SCORER_MAX_SNAPSHOT_AGE
     (stale_snapshot), an unknown run id (show), a realized AUC below
     SCORER_MIN_REALIZED_AUC (evaluate: realized_performance), an internal error (a bug:
     its traceback is logged)"""
_EPILOG = f"""\
Each flag sets the variable shown in brackets; a flag wins over its variable.

{_EXIT_CODES}"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorer",
        description="Batch-score a registered MLflow model over PostgreSQL features.",
        epilog="settings come from the environment (SCORER_*, MLFLOW_TRACKING_URI) or flags;"
        " see `scorer run --help`.\n\n" + _EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"scorer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in _COMMANDS.items():
        if name == "demo":
            sub = commands.add_parser(name, help=text, description=text)
            sub.add_argument("--rows", type=int, default=10_000, help="customers to score")
            continue
        sub = commands.add_parser(
            name,
            help=text,
            description=text,
            epilog=_EPILOG,
            usage=f"scorer {name}{_ARGUMENTS.get(name, '')} [options]",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "prune":
            sub.add_argument(
                "--dry-run", action="store_true", help="list what would go; change nothing"
            )
            _add_setting_flags(sub, PruneSettings, _PRUNE_GROUPS)
            continue
        if name == "grant":
            _add_grant_arguments(sub)
            continue
        if name == "evaluate":
            sub.add_argument(
                "--reevaluate",
                action="store_true",
                help="evaluate the runs evaluated before too (for labels that landed late)",
            )
            _add_setting_flags(sub, EvaluateSettings, _EVALUATE_GROUPS)
            continue
        if name in _HISTORY:
            _add_history_arguments(sub, name)
            _add_setting_flags(sub, DatabaseSettings)
            continue
        if name == "compare":
            sub.add_argument("run_a", metavar="RUN_A", help="the reference run, e.g. the champion")
            sub.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
            sub.add_argument("--json", action="store_true", help="one JSON document, for machines")
            _add_setting_flags(sub, CompareSettings)
            continue
        if name == "backfill":
            span = sub.add_argument_group("snapshots", "--from and --to, or --snapshots")
            exclusive = span.add_mutually_exclusive_group(required=True)
            exclusive.add_argument("--from", dest="start", help="first snapshot (inclusive)")
            exclusive.add_argument("--snapshots", help="comma-separated snapshots: A,B,C")
            span.add_argument("--to", dest="end", help="last snapshot (inclusive), with --from")
        if name == "migrate":
            _add_migrate_grant_arguments(sub)
        _add_setting_flags(sub, DatabaseSettings if name == "migrate" else RunSettings)
    return parser


def _add_migrate_grant_arguments(sub: argparse.ArgumentParser) -> None:
    """``migrate``'s optional grant: the release's migration Job migrates, then grants."""
    roles = sub.add_argument_group(
        "grant", "then grant these roles what they need, as `grant` does (both, or neither)"
    )
    roles.add_argument("--grant-runtime", metavar="ROLE", help="the runtime role")
    roles.add_argument("--grant-reader", metavar="ROLE", help="the reader role")


def _add_grant_arguments(sub: argparse.ArgumentParser) -> None:
    """The arguments of ``grant``: the two roles, ``--dry-run`` and the database flags."""
    roles = sub.add_argument_group("roles", "both must exist (CREATE ROLE ... LOGIN)")
    roles.add_argument("--runtime", required=True, metavar="ROLE", help="the runtime role")
    roles.add_argument("--reader", required=True, metavar="ROLE", help="the reader role")
    sub.add_argument(
        "--dry-run",
        action="store_true",
        help="print the SQL (for a DBA to apply) and connect to nothing; needs no database URL",
    )
    _add_setting_flags(sub, DatabaseSettings)


def _add_history_arguments(sub: argparse.ArgumentParser, name: str) -> None:
    """The arguments of ``runs``, ``show`` and ``explain`` (they read the database only)."""
    if name == "show":
        sub.add_argument("show_run_id", metavar="RUN_ID", help="the run to show")
        sub.add_argument(
            "--bins",
            type=int,
            choices=(10, 20, 25, 50, 100),
            default=20,
            help="bars of the score histogram (default 20)",
        )
    if name == "explain":
        sub.add_argument("entity_id", metavar="ENTITY_ID", help="the entity id, as text")
        sub.add_argument(
            "--run",
            metavar="RUN_ID",
            help="only this run's score, with its reasons (default: every kept run's score, "
            "with the reasons of the run latest_predictions shows)",
        )
    if name in ("runs", "explain"):
        sub.add_argument("--model", metavar="NAME", help="only this model's runs")
    if name == "runs":
        sub.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    sub.add_argument("--json", action="store_true", help="one JSON document, for machines")


def _add_setting_flags(
    parser: argparse.ArgumentParser,
    kind: type[LogSettings],
    grouping: dict[str, tuple[str | None, tuple[str, ...]]] = _GROUPS,
) -> None:
    """One flag per settings field, grouped, each naming its variable and default."""
    fields = kind.model_fields
    placed = {name for _, names in grouping.values() for name in names}
    groups = [*grouping.items(), ("other", (None, tuple(n for n in fields if n not in placed)))]
    for title, (description, names) in groups:
        present = [name for name in names if name in fields]
        if not present:
            continue
        group = parser.add_argument_group(title, description)
        for name in present:
            group.add_argument(
                flag_name(name),
                dest=name,
                default=None,
                metavar=_metavar(name, fields[name]),
                help=_flag_help(name, fields[name]),
            )


def _metavar(name: str, info: FieldInfo) -> str:
    for candidate in (info.annotation, *typing.get_args(info.annotation)):  # Literal | None too
        if typing.get_origin(candidate) is typing.Literal:
            return "{" + ",".join(str(value) for value in typing.get_args(candidate)) + "}"
    return name.rsplit("_", 1)[-1].upper()


def _flag_help(name: str, info: FieldInfo) -> str:
    if info.is_required():
        default = "required"
    elif name in _DEFAULT_TEXT:
        default = _DEFAULT_TEXT[name]
    elif info.default is None or info.default is PydanticUndefined:
        default = ""
    else:
        default = f"default {info.default}"
    details = ", ".join(part for part in (env_name(name), default) if part)
    # argparse formats help with %: escape the literal ones.
    return f"{info.description} [{details}]".replace("%", "%%")


def _on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise TerminationSignal(f"terminated by signal {signal.Signals(signum).name}")


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
        if key not in _NOT_SETTINGS and value is not None
    }
    logs.configure()  # the defaults, until the logging settings themselves are validated
    signal.signal(signal.SIGTERM, _on_sigterm)
    _configure_mlflow_http()
    try:
        log_settings = load(
            LogSettings, **{k: v for k, v in overrides.items() if k in LogSettings.model_fields}
        )
        logs.configure(log_settings.log_format, log_settings.log_level)
        return _dispatch(args.command, overrides, args)
    except BaseException as exc:  # the one place a failure becomes an exit code
        failure = _failure(exc)
        log.error(  # noqa: TRY400 - a known failure's message is the news; bugs get a traceback
            f"{args.command}.failed",
            error=str(failure),
            kind=failure.kind,
            exit_code=failure.exit_code,
            exc_info=exc if isinstance(failure, InternalError) else None,
        )
        return failure.exit_code
    finally:
        structlog.contextvars.clear_contextvars()


def _failure(exc: BaseException) -> ScorerError:
    if isinstance(exc, ScorerError):
        return exc
    from scorer.failures import classify  # noqa: PLC0415 - only a failure pays for the import

    return classify(exc)


def _dispatch(command: str, overrides: dict[str, str], args: argparse.Namespace) -> int:
    if command == "demo":
        try:
            import pgserver  # noqa: F401, PLC0415 - demo-only dependency
        except ImportError:
            raise ConfigError("the demo needs its extra: pip install 'scorer[demo]'") from None
        from scorer.ops import demo  # noqa: PLC0415

        return demo.main(rows=args.rows)
    if command in ("migrate", "grant"):  # the migration role's commands
        if command == "grant":
            return _grant(overrides, args)
        return migrate(load(DatabaseSettings, **overrides), _granted_roles(args))
    if command in ("prune", "evaluate", "compare") or command in _HISTORY:
        return _database_command(command, overrides, args)
    settings = _run_settings(overrides)
    if command == "backfill":
        return _backfill(settings, args)
    from scorer.run import runner, shadow  # noqa: PLC0415 - keep --help and migrate light

    # run: the run, then its shadow run when a challenger is set (scorer.run.shadow)
    return runner.check(settings) if command == "check" else shadow.run(settings)


def _backfill(settings: RunSettings, args: argparse.Namespace) -> int:
    from scorer.ops import backfill  # noqa: PLC0415

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
    from scorer.postgres.db import password_of  # noqa: PLC0415

    return password_of(settings.database_url.get_secret_value())


def _prune(settings: PruneSettings, dry_run: bool) -> int:
    from scorer.ops import retention  # noqa: PLC0415

    logs.register_secret(_password(settings))
    return retention.main(settings, dry_run)


def _evaluate(settings: EvaluateSettings, reevaluate: bool) -> int:
    from scorer.ops import evaluate  # noqa: PLC0415

    logs.register_secret(_password(settings))
    return evaluate.main(settings, reevaluate)


@contextmanager
def _reading(settings: DatabaseSettings) -> Iterator[db.Connection]:
    """A connection for reading the history, once the role may and the schema is current."""
    from scorer.postgres import db, privileges, schema  # noqa: PLC0415

    logs.register_secret(_password(settings))
    target = settings.target_schema
    url = settings.database_url.get_secret_value()
    with closing(db.connect(url)) as conn, db.database_errors(f"reading {target}"):
        with db.transaction(conn):
            privileges.require(conn, target, "history")
            schema.require_migrated(conn, target)
        yield conn


def _history(command: str, settings: DatabaseSettings, args: argparse.Namespace) -> int:
    """``runs``, ``show``, ``explain``: read the history, print a table or ``--json``."""
    from scorer.ops import history  # noqa: PLC0415

    if command == "runs" and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1 (given {args.limit})")
    target = settings.target_schema
    with _reading(settings) as conn:
        if command == "runs":
            listed = history.runs(conn, target, args.model, args.limit)
            output = history.to_json(listed) if args.json else history.render_runs(listed)
        elif command == "show":
            run = history.show(conn, target, args.show_run_id)
            output = history.to_json(run) if args.json else history.render_show(run, args.bins)
        else:
            scores = history.explain(conn, target, args.entity_id, args.model, args.run)
            output = history.to_json(scores) if args.json else history.render_explain(scores)
    print(output)  # the command's output (stdout), not a log line
    return EXIT_OK


def _compare(settings: CompareSettings, args: argparse.Namespace) -> int:
    """``compare``: two runs of one snapshot, compared inside PostgreSQL."""
    import json  # noqa: PLC0415

    from scorer.run import compare  # noqa: PLC0415

    with _reading(settings) as conn:
        found = compare.between(
            conn, settings.target_schema, args.run_a, args.run_b, settings.compare_top_share
        )
    print(json.dumps(found.as_json()) if args.json else compare.render(found))  # the output
    return EXIT_OK


def _database_command(command: str, overrides: dict[str, str], args: argparse.Namespace) -> int:
    """``prune``, ``evaluate``, ``runs``, ``show``, ``explain`` and ``compare``: the commands on
    the scorer's tables."""
    if command == "compare":
        return _compare(load(CompareSettings, **overrides), args)
    if command == "prune":
        return _prune(load(PruneSettings, **overrides), dry_run=args.dry_run)
    if command == "evaluate":
        return _evaluate(load(EvaluateSettings, **overrides), args.reevaluate)
    return _history(command, load(DatabaseSettings, **overrides), args)


def _granted_roles(args: argparse.Namespace) -> tuple[str, str] | None:
    """``migrate``'s ``--grant-runtime`` and ``--grant-reader``: both, or neither."""
    if (args.grant_runtime is None) != (args.grant_reader is None):
        raise ConfigError("migrate grants with --grant-runtime and --grant-reader together")
    return (args.grant_runtime, args.grant_reader) if args.grant_runtime else None


def migrate(settings: DatabaseSettings, roles: tuple[str, str] | None) -> int:
    """``migrate``; with ``roles`` (runtime, reader), then ``grant`` them."""
    from scorer.postgres import db, privileges, schema  # noqa: PLC0415

    logs.register_secret(_password(settings))
    url = settings.database_url.get_secret_value()
    with closing(db.connect(url)) as conn, db.database_errors("migrating"):
        with db.transaction(conn), conn.cursor() as cur:
            privileges.require_owner(cur, settings.target_schema, "migrate", create=True)
        applied = schema.migrate(conn, settings.target_schema)
        log.info(
            "migrate.done",
            schema=settings.target_schema,
            applied=applied,
            version=schema.SCHEMA_VERSION,
            database=logs.redact(url),
        )
        if roles is not None:
            with db.database_errors("granting"):
                statements = privileges.grant(conn, settings.target_schema, *roles)
            _log_granted(settings.target_schema, roles, len(statements))
    return EXIT_OK


def _log_granted(target: str, roles: tuple[str, str], statements: int) -> None:
    runtime, reader = roles
    log.info("grant.done", schema=target, runtime=runtime, reader=reader, statements=statements)


def _grant(overrides: dict[str, str], args: argparse.Namespace) -> int:
    """``grant``: issue the runtime and reader roles' grants, or (``--dry-run``) print them."""
    from scorer.postgres import db, privileges  # noqa: PLC0415

    if args.dry_run:
        target = load(SchemaSettings, **overrides).target_schema
        for statement in privileges.grant_sql(target, args.runtime, args.reader):
            print(statement)  # the command's output (stdout), not a log line
        return EXIT_OK
    settings = load(DatabaseSettings, **overrides)
    logs.register_secret(_password(settings))
    url = settings.database_url.get_secret_value()
    with closing(db.connect(url)) as conn, db.database_errors("granting"):
        statements = privileges.grant(conn, settings.target_schema, args.runtime, args.reader)
    _log_granted(settings.target_schema, (args.runtime, args.reader), len(statements))
    return EXIT_OK
