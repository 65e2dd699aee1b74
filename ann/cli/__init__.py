"""The command-line programs: thin shells that parse arguments, call the library and print.

One module per command (`python -m ann.<command>` runs `ann.cli.<command>.main`); the argument
types and option groups they share live in `ann.cli.args`. Nothing in the library imports them.
"""
