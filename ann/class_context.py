"""`python -m ann.class_context`: the command line of ann/cli/class_context.py."""

import sys

from ann.cli.class_context import main

if __name__ == "__main__":
    sys.exit(main())
