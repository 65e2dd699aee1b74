"""`python -m ann.nb_compare`: the command line of ann/cli/nb_compare.py."""

import sys

from ann.cli.nb_compare import main

if __name__ == "__main__":
    sys.exit(main())
