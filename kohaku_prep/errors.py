"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class PrepError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it."""
