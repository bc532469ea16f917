"""scorer: batch-score a registered MLflow model over PostgreSQL features."""

from importlib.metadata import PackageNotFoundError, version

from scorer.errors import InternalError, PermanentError, RetryableError, ScorerError

try:
    __version__ = version("scorer")  # one source of truth: pyproject.toml, via the install
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["InternalError", "PermanentError", "RetryableError", "ScorerError", "__version__"]
