"""Progress of long work (an epoch's steps, the IWAE estimate's images): a tqdm bar on a terminal, plain lines a
quarter of the way apart in a log."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Progress through ``total`` ``unit``s, with the running mean of the values given (an epoch's loss); silent
    unless ``shown``. The stream is looked up when made: a default bound at import outlives a replaced stderr."""

    def __init__(self, desc: str, total: int, unit: str, shown: bool = True, stream=None):
        self.desc, self.total, self.unit, self.stream = desc, total, unit, stream or sys.stderr
        self.done, self.sum, self.values, self.started = 0, 0.0, 0, time.perf_counter()
        self.next_line, tty = max(1, total // 4), shown and self.stream.isatty()
        self.shown = shown and not tty
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream) if tty else None

    def update(self, n: int, value: float | None = None) -> None:
        self.done += n
        if value is not None:
            self.sum, self.values = self.sum + float(value) * n, self.values + n
        mean = f", loss {self.sum / self.values:.4f}" if self.values else ""
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(mean[2:])
        elif self.shown and (self.done >= self.next_line or self.done >= self.total):
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            line = (
                f"{self.desc}: {min(self.done, self.total)}/{self.total} {self.unit}{mean} ({rate:.1f} {self.unit}/s)"
            )
            print(line, file=self.stream, flush=True)
            self.next_line += max(1, self.total // 4)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
