"""`python -m ann.deploy`: the command line of ann/cli/deploy.py."""

import sys

from ann.cli.deploy import main

if __name__ == "__main__":
    sys.exit(main())
