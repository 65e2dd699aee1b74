"""`python -m ann.stage_similarity`: the command line of ann/cli/stage_similarity.py."""

import sys

from ann.cli.stage_similarity import main

if __name__ == "__main__":
    sys.exit(main())
