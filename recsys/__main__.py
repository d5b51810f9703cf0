"""``python -m recsys``: the commands of `recsys.cli`."""

from recsys.cli import main

raise SystemExit(main())
