"""scorer: batch-score a registered MLflow model over PostgreSQL features."""

from importlib.metadata import version

from scorer.errors import InternalError, PermanentError, RetryableError, ScorerError

__version__ = version("scorer")  # one source of truth: pyproject.toml

__all__ = ["InternalError", "PermanentError", "RetryableError", "ScorerError", "__version__"]
