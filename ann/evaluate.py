"""`python -m ann.evaluate`: the command line of ann/cli/evaluate.py."""

import sys

from ann.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
