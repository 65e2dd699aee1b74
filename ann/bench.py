"""`python -m ann.bench`: the command line of ann/cli/bench.py."""

import sys

from ann.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
