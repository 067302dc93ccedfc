"""The exception types the CLI turns into a one-line error and a non-zero exit."""


class PrepError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it."""

    exit_code = 1


class Stopped(PrepError):
    """The user stopped the work (Ctrl-C); the message says how it continues."""

    exit_code = 130
