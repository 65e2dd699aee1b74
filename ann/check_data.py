"""`python -m ann.check_data`: the command line of ann/cli/check_data.py."""

import sys

from ann.cli.check_data import main

if __name__ == "__main__":
    sys.exit(main())
