"""Progress of long work: plain lines a quarter of the way apart in a log, a bar on a terminal, nothing unless shown."""

import io

from jaxvae.run.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_each_quarter_and_at_the_end_with_the_running_mean():
    """Chunks of 2 steps and a last one of 1, each given its mean loss: the running mean weighs each by its steps."""
    log = io.StringIO()  # not a terminal
    with Progress("epoch 1/2", 9, "steps", stream=log) as progress:
        for steps, loss in ((2, 3.0), (2, 2.0), (2, 5.0), (2, 0.0), (1, 7.0)):
            progress.update(steps, loss)
    lines = [line.split(" (")[0] for line in log.getvalue().splitlines()]  # without the rate, a timing
    assert lines == [  # a line each 9 // 4 = 2 steps, and the last, which that count skips: (6 + 4 + 10 + 0 + 7) / 9
        "epoch 1/2: 2/9 steps, loss 3.0000",
        "epoch 1/2: 4/9 steps, loss 2.5000",
        "epoch 1/2: 6/9 steps, loss 3.3333",
        "epoch 1/2: 8/9 steps, loss 2.5000",
        "epoch 1/2: 9/9 steps, loss 3.0000",
    ]
    log = io.StringIO()
    with Progress("log p(x)", 3, "images", stream=log) as progress:  # under 4 in all: a line each
        for _ in range(3):
            progress.update(1)
    assert [line.split(" (")[0] for line in log.getvalue().splitlines()] == [
        f"log p(x): {i}/3 images" for i in (1, 2, 3)
    ]


def test_a_bar_on_a_terminal_and_nothing_unless_shown():
    terminal, quiet, quiet_terminal = Terminal(), io.StringIO(), Terminal()
    for stream, shown in ((terminal, True), (quiet, False), (quiet_terminal, False)):
        with Progress("log p(x)", 10, "images", shown, stream) as progress:
            progress.update(10)
        assert not stream.getvalue() or stream.getvalue().endswith("\n")  # the block ends the bar's line
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()
    assert quiet.getvalue() == quiet_terminal.getvalue() == ""
