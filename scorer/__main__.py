"""Entry point for ``python -m scorer``.

A container's PID 1 ignores a SIGTERM it has no handler for, and the imports take a few tenths
of a second: until ``main`` installs its own handler, a SIGTERM ends the process at once, with
the exit code of a retryable failure (nothing has started).
"""

import signal
import sys

signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(1))

from scorer.cli import main  # noqa: E402 - after the handler, on purpose

raise SystemExit(main())
