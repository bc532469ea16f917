"""scorer: batch-score a registered MLflow model over PostgreSQL features."""

from scorer.errors import PermanentError, RetryableError, ScorerError

__version__ = "0.1.0"

__all__ = ["PermanentError", "RetryableError", "ScorerError", "__version__"]
