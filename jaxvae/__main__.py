"""The ``jaxvae`` command (also ``python -m jaxvae``): ``jaxvae.run.cli`` once it has loaded.

Loading it takes a second or more (JAX, Flax, Orbax). A stop signal in that time would otherwise kill the command
without a word (SIGTERM) or raise Ctrl-C's KeyboardInterrupt inside an import, where it prints a traceback or is
swallowed (by a garbage collector's callback) and the command runs on. Until the CLI takes over, a stop ends the
command at once, in one line: nothing has been read or written yet.
"""

import os
import signal
import sys

from jaxvae.errors import STOP_SIGNALS


def _stopped_while_loading(signum, frame):
    how = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    os.write(2, f"jaxvae: {how} while loading, before doing anything\n".encode())
    os._exit(128 + signum)


def main() -> int:
    kept = {s: signal.signal(s, _stopped_while_loading) for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    from jaxvae.run import cli  # after the handlers: this import is the second it guards

    for s, handler in kept.items():
        signal.signal(s, handler)
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
