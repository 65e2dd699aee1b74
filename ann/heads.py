"""`python -m ann.heads`: the command line of ann/cli/heads.py."""

import sys

from ann.cli.heads import main

if __name__ == "__main__":
    sys.exit(main())
