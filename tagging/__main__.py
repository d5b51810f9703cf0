"""``python -m tagging``: the commands of `tagging.cli`."""

from tagging.cli import main

raise SystemExit(main())
