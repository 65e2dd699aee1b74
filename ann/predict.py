"""`python -m ann.predict`: the command line of ann/cli/predict.py."""

import sys

from ann.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
