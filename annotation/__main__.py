"""``python -m annotation``: ``coldtag annotate`` (`annotation.cli`)."""

import sys

from annotation.cli import cli_main

sys.exit(cli_main())
