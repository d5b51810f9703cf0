"""``python -m toycatalog``: the commands of `toycatalog.cli`."""

from toycatalog.cli import main

raise SystemExit(main())
