"""`python -m ann.info`: the command line of ann/cli/info.py."""

import sys

from ann.cli.info import main

if __name__ == "__main__":
    sys.exit(main())
