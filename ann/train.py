"""`python -m ann.train`: the command line of ann/cli/train.py."""

import sys

from ann.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
