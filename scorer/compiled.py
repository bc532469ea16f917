"""The package's compiled part, ``scorer._native``: plain C built by ``setup.py`` when the
package is installed and loaded with ctypes (no Python headers, nothing compiled at run time),
for the reasons' per-row loops:

- ``model/_walk.c``: the walk of an xgboost forest for path contributions
  (``scorer.model.tree_walk``);
- ``model/_reasons.c``: each row's top K as jsonb (``scorer.model.reasons``);
- ``postgres/_append_field.c``: that jsonb as one more field on each COPY row
  (``scorer.postgres.wire``).
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import cache


@cache
def library() -> ctypes.CDLL:
    """The compiled library, its functions typed."""
    spec = importlib.util.find_spec("scorer._native")
    if spec is None or spec.origin is None:
        raise ImportError("scorer._native is not built: reinstall the scorer package")
    loaded = ctypes.CDLL(spec.origin)
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    loaded.scorer_walk.argtypes = [
        pointer, size, size, pointer, pointer, pointer, size, pointer, pointer, pointer, size,
        pointer,
    ]  # fmt: skip
    loaded.scorer_walk.restype = None
    loaded.scorer_reasons.argtypes = [
        pointer, size, size, size, size, pointer, pointer, pointer, pointer,
    ]  # fmt: skip
    loaded.scorer_reasons.restype = size
    loaded.scorer_append_field.argtypes = [pointer, pointer, pointer, pointer, size, size, pointer]
    loaded.scorer_append_field.restype = None
    return loaded
