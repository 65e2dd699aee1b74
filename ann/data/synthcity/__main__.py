"""`python -m ann.data.synthcity`: the command line of ann/cli/synthcity.py."""

import sys

from ann.cli.synthcity import main

if __name__ == "__main__":
    sys.exit(main())
