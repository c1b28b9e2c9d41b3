"""One exception type for user mistakes: the CLI prints its message on one line, no traceback."""


class LmforgeError(Exception):
    """A bad input or setting; the message names the file:line or the config key and says what to do."""
