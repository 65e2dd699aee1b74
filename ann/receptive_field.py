"""`python -m ann.receptive_field`: the command line of ann/cli/receptive_field.py."""

import sys

from ann.cli.receptive_field import main

if __name__ == "__main__":
    sys.exit(main())
