"""``python -m annotation``: ``coldtag annotate`` (`annotation.cli`)."""

from annotation.cli import cli_main

raise SystemExit(cli_main())
