"""A signature's declared numeric types, enforced per row as MLflow's schema enforcement would.

Numbers travel as ``float8``. A value the declared type cannot hold exactly makes its row a
rejected row, with the reason named per column (``tenure: not an integer``); rejected rows
count against ``SCORER_MAX_REJECTED_RATIO``. The rules, per declared type:

- ``integer`` (int32): a fraction, or a value beyond int32's range, is refused;
- ``long`` (int64): a fraction, or a magnitude above 2**53, is refused: float8 holds every
  integer up to 2**53 exactly and not all beyond it, so a larger one may not be the table's;
- ``boolean``: anything but 0 and 1 is refused;
- ``double`` and ``float``: any finite value is taken (``float`` reaches the model as the
  float32 it declares).

NULL is a missing value for every type. A column whose SQL type already meets the rule is not
checked (an ``int4`` declared ``integer`` or ``long``, a ``boolean`` declared ``boolean``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Rule = Literal["fraction", "integer range", "long range", "boolean"]

_INT32 = (-(2.0**31), 2.0**31 - 1)
_EXACT = 2.0**53
_REASONS: dict[Rule, str] = {
    "fraction": "not an integer",
    "integer range": "beyond the range of integer",
    "long range": "beyond 2**53, where float8 is no longer exact",
    "boolean": "not a boolean (0 or 1)",
}
_SMALL_INTEGERS = frozenset({"int2", "int4"})


@dataclass(frozen=True)
class Check:
    """One rule on one numeric input: its position among the plan's numbers, and its name."""

    position: int
    name: str
    rule: Rule

    @property
    def reason(self) -> str:
        """The rejected-row reason, e.g. ``tenure: not an integer``."""
        return f"{self.name}: {_REASONS[self.rule]}"

    def refused(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Where the declared type cannot hold the value (never where it is NULL)."""
        refused: npt.NDArray[np.bool_]
        if self.rule == "boolean":
            refused = ~((values == 0) | (values == 1) | np.isnan(values))
        elif self.rule == "fraction":
            refused = np.isfinite(values) & (values != np.trunc(values))
        elif self.rule == "integer range":
            low, high = _INT32
            refused = (values < low) | (values > high)
        else:
            refused = np.abs(values) > _EXACT
        return refused


def checks(position: int, name: str, declared: str, typname: str) -> tuple[Check, ...]:
    """The checks a column of SQL type ``typname`` needs to be the ``declared`` type."""
    if declared == "boolean":
        return () if typname == "bool" else (Check(position, name, "boolean"),)
    if declared not in ("integer", "long") or typname in _SMALL_INTEGERS or typname == "bool":
        return ()
    beyond = Check(position, name, "integer range" if declared == "integer" else "long range")
    if typname == "int8":  # an integer already; only its range can fail
        return (beyond,)
    return (Check(position, name, "fraction"), beyond)
