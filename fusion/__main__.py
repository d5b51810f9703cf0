"""``python -m fusion``: the commands of `fusion.cli`."""

from fusion.cli import main

raise SystemExit(main())
