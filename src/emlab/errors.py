"""One exception type for every user-facing failure.

Messages are one line: the bad value, where it came from, and the fix.
The CLI prints them without a traceback and exits with status 2.
"""


class EmlabError(Exception):
    """A user-facing error whose message is a complete one-line explanation."""
