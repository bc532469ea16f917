"""What a model returned and how it failed, in words, never in values.

A pyfunc's DataFrame output is scored from the column named for the positive class
(``SCORER_POSITIVE_CLASS``), else the one named ``probability``, never by position; anything
ambiguous is refused, listing the columns returned and their dtypes. A model library's
failure is summarised by its type and the input columns its message names, else by the
dtypes (and missing-value counts) of what the model was handed: the message itself may quote
feature values, so it is never passed on.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from scorer.errors import ModelOutputError
from scorer.io.features import ModelInput

_COLUMN_INDEX = re.compile(r"(\d+)(?:st|nd|rd|th) \(0-based\) column")
_LISTED = 30  # columns a message lists before it says how many more
_PROBABILITY_COLUMN = "probability"


def summary(exc: Exception, inputs: tuple[ModelInput, ...], data: Any) -> str:
    """The error's type and the input columns it names, else the dtypes the model was handed
    (``inputs: tenure int64, contract category``); none of its data."""
    text = str(exc)
    named = [item.name for item in inputs if re.search(rf"\b{re.escape(item.name)}\b", text)]
    found = _COLUMN_INDEX.search(text)
    if found and int(found.group(1)) < len(inputs):
        named.append(inputs[int(found.group(1))].name)
    hint = ""
    if "category" in text.lower() and "not in the training" in text.lower():
        hint = " (a category the model never saw; the model's library refuses it)"
    elif "schema" in text.lower() or "convert" in text.lower():
        hint = " (the input does not match the model's signature)"
    handed = _handed(data, inputs)
    if named:
        columns = ", ".join(
            f"{name} ({handed[name]})" if name in handed else name for name in dict.fromkeys(named)
        )
        return f"{type(exc).__name__} on column {columns}{hint}"
    listed = _listed([f"{name} {dtype}" for name, dtype in handed.items()])
    return f"{type(exc).__name__}{hint}; inputs: {listed}"


def _handed(data: Any, inputs: tuple[ModelInput, ...]) -> dict[str, str]:
    """Each input column's dtype as the model was handed it, with its count of missing
    values if any: ``{"tenure": "float64 with 3 missing"}``."""
    import pandas as pd  # noqa: PLC0415 - only a failed prediction needs it

    if isinstance(data, pd.DataFrame):
        missing = data.isna().sum().tolist()
        pairs = zip(data.columns, data.dtypes, missing, strict=True)
        return {str(name): _dtype(str(dtype), int(n)) for name, dtype, n in pairs}
    matrix = np.asarray(data)
    if matrix.ndim != 2 or matrix.shape[1] != len(inputs):
        return {}
    holes = np.isnan(matrix).sum(axis=0) if matrix.dtype.kind == "f" else np.zeros(len(inputs))
    return {
        item.name: _dtype(str(matrix.dtype), int(n))
        for item, n in zip(inputs, holes.tolist(), strict=True)
    }


def _dtype(dtype: str, missing: int) -> str:
    return f"{dtype} with {missing} missing" if missing else dtype


def _listed(parts: list[str]) -> str:
    """Up to ``_LISTED`` parts, then how many more."""
    more = len(parts) - _LISTED
    return ", ".join(parts[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def by_name(out: Any, wanted: str | None, method: str) -> Any:
    """A pyfunc's output: from a DataFrame, the column named ``wanted`` (the positive class),
    else the one named ``probability``, else its only column; any other output as it is.
    ``ModelOutputError`` for a DataFrame where that column is missing or named twice, and
    for unnamed output when ``wanted`` is set, saying what was returned (never values)."""
    import pandas as pd  # noqa: PLC0415 - pyfunc models bring pandas

    if not isinstance(out, pd.DataFrame):
        if wanted is not None:
            raise ModelOutputError(
                f"SCORER_POSITIVE_CLASS={wanted!r} names the column to score, but the model's "
                f"{method} returned {type(out).__name__} {_shape(out)}, which names no columns: "
                f"return a DataFrame with a column named {wanted!r}, or unset "
                "SCORER_POSITIVE_CLASS"
            )
        return out
    names = [str(name) for name in out.columns]
    if wanted is None and len(names) == 1:
        return out.iloc[:, 0].to_numpy()
    target = _PROBABILITY_COLUMN if wanted is None else wanted
    at = [index for index, name in enumerate(names) if name == target]
    if len(at) == 1:
        return out.iloc[:, at[0]].to_numpy()
    returned = _listed([f"{name} {dtype}" for name, dtype in zip(names, out.dtypes, strict=True)])
    problem = f"no column named {target!r}" if not at else f"{len(at)} columns named {target!r}"
    raise ModelOutputError(
        f"the model's {method} returned a DataFrame of {len(names)} columns ({returned}) with "
        f"{problem}: the score is read by name, from the column named for the positive class "
        f"(SCORER_POSITIVE_CLASS) or, when it is unset, {_PROBABILITY_COLUMN!r}"
    )


def _shape(out: Any) -> str:
    shape = getattr(out, "shape", None)
    return "" if shape is None else f"of shape {tuple(shape)}"
