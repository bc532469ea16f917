"""``python -m benchmarks.no_drift COMMAND [options]``: ``scorer``'s command line, run in this
process with no per-feature drift collector (``scorer.run.drift``), as a sharded run's shard
streams: what a run costs without the drift evidence (``benchmarks.drift_cost``). Not a setting
of the scorer: only this child process goes without the evidence."""

from __future__ import annotations

from scorer import cli
from scorer.postgres import db
from scorer.run import drift, steps
from scorer.run.prepare import Prepared
from scorer.run.progress import RunProgress


def _no_collector(
    _run: RunProgress, _writer: db.Connection, _prepared: Prepared
) -> drift.Collector | None:
    """No evidence: the run records no bins and checks no feature's PSI."""
    return None


def main() -> int:
    """``scorer``'s ``main`` with every run of this process collecting no drift evidence."""
    steps._drift_collector = _no_collector  # type: ignore[assignment]  # this process only
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
