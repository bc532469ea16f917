"""``python -m benchmarks.no_drift COMMAND [options]``: ``scorer``'s command line, run in this
process with a per-feature drift collector (``scorer.run.drift``) that folds in no chunk: what a
run costs without the drift evidence (``benchmarks.drift_cost``). The run still looks up its
reference, so it checks no feature (each is named unchecked) and records no bins. Not a setting
of the scorer: only this child process goes without the evidence."""

from __future__ import annotations

from scorer import cli
from scorer.io.features import Chunk
from scorer.run import drift


def _fold_nothing(self: drift.Collector, chunk: Chunk) -> None:
    """No evidence: no count and no sample."""


def main() -> int:
    """``scorer``'s ``main`` with every run of this process collecting no drift evidence."""
    drift.Collector.add = _fold_nothing  # type: ignore[method-assign]  # this process only
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(main())
