"""How a command ends early: the exception for bad user input (the CLI prints its message in one line and exits
with 2), and the signals that stop a run cleanly. Light on purpose: the command's entry reads it before JAX loads."""

import signal

# Ctrl-C, a scheduler's SIGTERM, a closed terminal's SIGHUP (not on Windows): each stops a run cleanly
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class UserError(Exception):
    """Bad input (data, flags, checkpoints): the message says what is wrong and what to do."""
