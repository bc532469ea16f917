"""The quality gate's arithmetic: PSI over the reference deciles, and each check's verdict."""

from __future__ import annotations

import numpy as np
import pytest

from scorer.run import gate
from scorer.run.gate import Limits, Meaning, NoReference, Observed, Reference

LIMITS = Limits(max_score_psi=0.25, min_rows_ratio=0.8, max_null_share_increase=0.2)


def histogram(scores: np.ndarray) -> np.ndarray:
    return np.bincount(
        np.clip((scores * gate.HISTOGRAM_BINS).astype(int), 0, gate.HISTOGRAM_BINS - 1),
        minlength=gate.HISTOGRAM_BINS,
    )


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = histogram(rng.beta(2, 8, 50_000))
    same = histogram(rng.beta(2, 8, 50_000))
    shifted = histogram(rng.beta(4, 6, 50_000))
    assert gate.psi(reference, same) < 0.01
    assert gate.psi(reference, shifted) > 0.5


def test_psi_matches_the_textbook_formula_on_decile_bins() -> None:
    rng = np.random.default_rng(1)
    ref_scores, cur_scores = rng.uniform(0, 1, 100_000), rng.beta(1.2, 1, 100_000)
    edges = np.quantile(ref_scores, np.arange(1, 10) / 10)
    expected = np.histogram(ref_scores, np.concatenate(([0], edges, [1])))[0] / ref_scores.size
    actual = np.histogram(cur_scores, np.concatenate(([0], edges, [1])))[0] / cur_scores.size
    textbook = float(np.sum((actual - expected) * np.log(actual / expected)))
    got = gate.psi(histogram(ref_scores), histogram(cur_scores))
    assert got == pytest.approx(textbook, abs=2e-3)  # edges fall on 1/1000 bins


def test_a_first_run_has_no_checks_passes_and_says_why() -> None:
    verdict = gate.evaluate(NoReference(gate.FIRST_RUN), Observed(10, None, {}), LIMITS, None)
    assert verdict.passed
    assert verdict.as_json() == {
        "reference_run_id": None,
        "checks": [],
        "passed": True,
        "override": None,
        "no_reference": gate.FIRST_RUN,
    }


def test_what_scores_mean_is_described_by_kind_and_class() -> None:
    assert Meaning("m", "t", "probability", "0").describe() == "probabilities of class '0'"
    assert Meaning("m", "t", "raw", None).describe() == "raw scores"


def test_each_check_fails_warns_or_passes_by_its_own_limit() -> None:
    rng = np.random.default_rng(2)
    reference = Reference("prev", 1000, histogram(rng.beta(2, 8, 1000)), {"a": {"null_share": 0.0}})
    observed = Observed(
        900, histogram(rng.beta(2, 8, 900)), {"a": {"null_share": 0.1}, "new": {"null_share": 1}}
    )
    verdict = gate.evaluate(reference, observed, LIMITS, None)
    by_name = {check.check: check for check in verdict.checks}
    assert by_name["rows_ratio"].status == "warning"  # 0.9: under 0.95, over 0.8
    assert by_name["null_share_increase:a"].status == "warning"  # +0.1: over 0.05, under 0.2
    assert "null_share_increase:new" not in by_name  # no reference share to compare with
    assert verdict.passed
    half = gate.evaluate(reference, Observed(500, None, {}), LIMITS, None)
    assert [c.describe() for c in half.failed] == ["rows_ratio 0.5 < 0.8"]
    assert not half.passed
    overridden = gate.evaluate(reference, Observed(500, None, {}), LIMITS, "v8 promoted")
    assert overridden.passed
    assert overridden.failed  # the evidence stays
