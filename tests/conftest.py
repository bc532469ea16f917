"""The rule of every suite: when ``CI`` is set, a skipped test is a failure.

The real services (PostgreSQL, MLflow) are fixtures of the ``tests.support.stack`` plugin,
which loads nothing heavy until a test asks for one: a unit test never loads MLflow
(``tests/unit/test_light_imports.py``).
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

pytest_plugins = ("tests.support.stack",)


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI a skip is a failure: a test that could not run proves nothing.

    Covers skips from marks, fixtures and test bodies (setup or call). An xfail keeps its
    outcome (it is reported as skipped with ``wasxfail``), and ``-m``/``-k`` deselection never
    reaches this hook. Skips at collection (a module-level skip) fail the run at its end
    (``pytest_make_collect_report`` below).
    """
    report = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI is set, so a skip is a failure): {_reason(report)}"
    return report


_SKIPPED_AT_COLLECTION = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """In CI a module or class skipped at collection fails the run too (at its end)."""
    report = yield
    if in_ci() and report.skipped:
        skipped = collector.config.stash.setdefault(_SKIPPED_AT_COLLECTION, [])
        skipped.append(f"{report.nodeid}: {_reason(report)}")
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name each collection-time skip that fails a CI run."""
    for line in terminalreporter.config.stash.get(_SKIPPED_AT_COLLECTION, []):
        terminalreporter.write_line(f"FAILED (skipped in CI) {line}", red=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A CI run with a collection-time skip exits as failed, after every test has run."""
    skipped = session.config.stash.get(_SKIPPED_AT_COLLECTION, [])
    if skipped and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)
