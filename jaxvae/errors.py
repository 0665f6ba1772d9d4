"""How a command ends early: the exception for bad user input (the CLI prints its message in one line and exits
with 2), the one check of a path that runs into a file, and the signals that stop a run cleanly. Light on purpose:
the command's entry reads it before JAX loads."""

import signal
from pathlib import Path

# Ctrl-C, a scheduler's SIGTERM, a closed terminal's SIGHUP (not on Windows): each stops a run cleanly
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class UserError(Exception):
    """Bad input (data, flags, checkpoints): the message says what is wrong and what to do."""


def refuse_file_on_path(path: Path, flag: str, folder: bool) -> None:
    """Refuse, in one line and without writing anything, a path (an output, a data folder) below a regular file
    (or, for ``folder``, a path that is itself a file)."""
    target = path if folder else path.parent
    existing = next((p for p in (target, *target.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"{flag} {path}: {existing} is a file, not a folder; choose another {flag}")
