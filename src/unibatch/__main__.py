"""``python -m unibatch``: the unibatch command."""

from unibatch.cli import main

raise SystemExit(main())
