"""Entry point for ``python -m scorer``."""

from scorer.cli import main

raise SystemExit(main())
