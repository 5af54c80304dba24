"""Errors the command line reports in one line with exit code 2.

Its own module, so that subcommands defined outside `streamdiar.cli` raise the very class
`cli.main` catches, also when the CLI runs as `python -m streamdiar.cli` (then `__main__`).
"""


class UserError(Exception):
    """Something the user can fix: a file, a flag or a value."""
