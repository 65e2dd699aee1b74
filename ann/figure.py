"""`python -m ann.figure`: the command line of ann/cli/figure.py."""

import sys

from ann.cli.figure import main

if __name__ == "__main__":
    sys.exit(main())
