"""The one exception type for problems a user can fix (bad file, bad option)."""


class CephError(Exception):
    """A user-facing error: its message names the problem; the CLI prints it without a traceback."""
