import sys

from review.cli import cli_main

sys.exit(cli_main())
