"""What a model returned and how it failed, in words: columns by name, never a value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scorer.errors import ModelOutputError
from scorer.io.features import ModelInput
from scorer.model import output

PLANTED = "0.7319"  # a value that must never reach a message
INPUTS = (
    ModelInput("tenure", "number", "long"),
    ModelInput("contract", "string", "string"),
    ModelInput("monthly_charges", "number", "double"),
)


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure": np.array([1, 2, 3], dtype=np.int64),
            "contract": pd.Categorical(["a", "b", None]),
            "monthly_charges": [float(PLANTED), np.nan, 3.5],
        }
    )


@pytest.mark.parametrize(
    ("columns", "wanted", "expected"),
    [
        (["label", "probability"], None, "probability"),
        (["probability", "label"], None, "probability"),
        (["0", "1"], "0", "0"),
        ([0, 1], "1", 1),  # the classes as integers, matched as text
        (["score"], None, "score"),  # one column is the score, whatever its name
    ],
)
def test_a_dataframe_is_scored_from_the_column_named_for_the_class_or_probability(
    columns: list[object], wanted: str | None, expected: object
) -> None:
    out = pd.DataFrame(np.arange(3 * len(columns)).reshape(3, -1) / 10, columns=columns)
    got = output.by_name(out, wanted, "pyfunc predict")
    np.testing.assert_array_equal(got, out[expected].to_numpy())


@pytest.mark.parametrize(
    ("columns", "wanted", "problem"),
    [
        (["0", "1"], None, "no column named 'probability'"),
        (["label", "probability"], "1", "no column named '1'"),
        (["probability", "probability"], None, "2 columns named 'probability'"),
        (["probability"], "1", "no column named '1'"),  # whose probability is it?
    ],
)
def test_an_ambiguous_dataframe_is_refused_saying_what_was_returned(
    columns: list[str], wanted: str | None, problem: str
) -> None:
    out = pd.DataFrame(np.full((3, len(columns)), float(PLANTED)), columns=columns)
    with pytest.raises(ModelOutputError) as raised:
        output.by_name(out, wanted, "pyfunc predict")
    message = str(raised.value)
    assert problem in message
    assert f"{columns[0]} float64" in message
    assert "SCORER_POSITIVE_CLASS" in message
    assert PLANTED not in message


def test_a_positive_class_for_output_that_names_no_columns_is_refused() -> None:
    with pytest.raises(ModelOutputError, match="names no columns"):
        output.by_name(np.zeros((3, 2)), "1", "pyfunc predict")
    plain = np.zeros(3)
    assert output.by_name(plain, None, "pyfunc predict") is plain


def test_a_library_error_naming_a_column_is_summarised_by_that_column_and_its_dtype() -> None:
    error = ValueError(f"monthly_charges holds {PLANTED}, which the model cannot take")
    summary = output.summary(error, INPUTS, frame())
    assert summary == "ValueError on column monthly_charges (float64 with 1 missing)"


def test_a_library_error_naming_no_column_lists_the_dtypes_the_model_was_handed() -> None:
    summary = output.summary(ValueError(f"could not use {PLANTED}"), INPUTS, frame())
    assert summary == (
        "ValueError; inputs: tenure int64, contract category with 1 missing, "
        "monthly_charges float64 with 1 missing"
    )
    matrix = np.array([[1, np.nan, 2], [3, 4, 5]], dtype=np.float32)
    summary = output.summary(TypeError("bad input"), INPUTS, matrix)
    assert summary == (
        "TypeError; inputs: tenure float32, contract float32 with 1 missing, monthly_charges "
        "float32"
    )
