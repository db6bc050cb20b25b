"""The one exception type for problems a user can fix: the command line prints it as one line."""


class FmnistError(Exception):
    """Bad input, missing or wrong data, or an unusable output directory; the message says what to do."""
