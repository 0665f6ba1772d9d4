"""The one exception type for bad user input: the CLI prints its message in one line and exits with 2."""


class UserError(Exception):
    """Bad input (data, flags, checkpoints): the message says what is wrong and what to do."""
