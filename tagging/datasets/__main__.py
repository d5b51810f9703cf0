"""``python -m tagging.datasets``: the command of `tagging.datasets.cli`."""

from tagging.datasets.cli import main

raise SystemExit(main())
