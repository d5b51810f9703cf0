"""``python -m annotation.review``: ``coldtag review`` (`annotation.review.cli`)."""

from annotation.review.cli import cli_main

raise SystemExit(cli_main())
