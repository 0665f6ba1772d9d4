"""Progress of long work: plain lines a quarter of the way apart in a log, a bar on a terminal, nothing unless shown."""

import io

from jaxvae.run.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_each_quarter_with_the_running_mean():
    log = io.StringIO()  # not a terminal
    with Progress("epoch 1/2", 8, "steps", stream=log) as progress:
        for loss in (4.0, 2.0, 3.0, 1.0, 5.0, 5.0, 0.0, 0.0):
            progress.update(1, loss)
    lines = [line.split(" (")[0] for line in log.getvalue().splitlines()]  # without the rate, a timing
    assert lines == [  # the mean of the first 2, 4, 6 and 8 losses
        "epoch 1/2: 2/8 steps, loss 3.0000",
        "epoch 1/2: 4/8 steps, loss 2.5000",
        "epoch 1/2: 6/8 steps, loss 3.3333",
        "epoch 1/2: 8/8 steps, loss 2.5000",
    ]


def test_a_bar_on_a_terminal_and_nothing_unless_shown():
    terminal, quiet, quiet_terminal = Terminal(), io.StringIO(), Terminal()
    for stream, shown in ((terminal, True), (quiet, False), (quiet_terminal, False)):
        with Progress("log p(x)", 10, "images", shown, stream) as progress:
            progress.update(10)
        assert not stream.getvalue() or stream.getvalue().endswith("\n")  # the block ends the bar's line
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()
    assert quiet.getvalue() == quiet_terminal.getvalue() == ""
