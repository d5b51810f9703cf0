import sys

from annotation.review.cli import cli_main

sys.exit(cli_main())
