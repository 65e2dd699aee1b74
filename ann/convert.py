"""`python -m ann.convert`: the command line of ann/cli/convert.py."""

import sys

from ann.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
