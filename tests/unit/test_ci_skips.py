"""The CI rule of tests/conftest.py: with ``CI`` set, a skip fails the run."""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest
from tests.conftest import (
    pytest_make_collect_report,
    pytest_runtest_makereport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

@pytest.fixture
def unavailable():
    pytest.skip("the tool did not build")
"""
TESTS = """
import pytest

def test_passes():
    pass

def test_skips_in_body():
    pytest.skip("helm-docs missing")

@pytest.mark.skip(reason="by mark")
def test_skip_mark():
    pass

@pytest.mark.skipif(True, reason="by condition")
def test_skipif_mark():
    pass

def test_skips_in_fixture(unavailable):
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_xfails():
    raise AssertionError

@pytest.mark.xfail(reason="not even run", run=False)
def test_xfail_not_run():
    raise AssertionError

@pytest.mark.slow
def test_deselected():
    pytest.skip("never runs: deselected")
"""
MODULE_SKIP = """
import pytest
pytest.skip("whole module unavailable", allow_module_level=True)
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=TESTS)
    pytester.makeini("[pytest]\nmarkers =\n    slow: deselected below\n")
    return pytester


def test_in_ci_every_skip_fails_and_xfail_and_deselection_are_untouched(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_inprocess("-m", "not slow", "-rA")
    # A skip in the body fails the test; one at setup (mark, fixture) is an error: both fail.
    result.assert_outcomes(passed=1, failed=1, errors=3, xfailed=2, deselected=1)
    result.stdout.fnmatch_lines(["*skipped in CI (CI is set, so a skip is a failure)*"])
    assert "helm-docs missing" in result.stdout.str()
    assert "the tool did not build" in result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_outside_ci_skips_stay_skips(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_inprocess("-m", "not slow")
    result.assert_outcomes(passed=1, skipped=4, xfailed=2, deselected=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_ci_unset_values(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    suite.runpytest_inprocess("-m", "not slow").assert_outcomes(
        passed=1, skipped=4, xfailed=2, deselected=1
    )


def test_in_ci_a_module_skipped_at_collection_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n", test_gone=MODULE_SKIP)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1, skipped=1)  # every other test still ran
    result.stdout.fnmatch_lines(["*FAILED (skipped in CI) test_gone.py: whole module unavailable*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
