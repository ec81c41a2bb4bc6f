"""The one exception type that library code raises for the user.

`cli.py` turns an `EdgecnnError` into a single line on stderr and exit code 1; nothing else catches broadly.
"""


class EdgecnnError(Exception):
    """An error whose message is written for the user (one line, names the file and the problem)."""


class EdgecnnWarning(UserWarning):
    """A warning written for the user (one line): the CLI prints it as `edgecnn: warning: <message>`."""
