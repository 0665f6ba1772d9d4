"""Progress of an epoch: a tqdm bar on a terminal, plain periodic lines when output goes to a log."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class EpochProgress:
    """Advance by chunks of steps; shows the running mean loss of the epoch."""

    def __init__(self, epoch: int, epochs: int, steps: int, stream=None, lines: int = 4):
        stream = stream or sys.stderr  # looked up now: a default bound at import outlives a replaced stderr
        self.epoch, self.epochs, self.steps, self.stream = epoch, epochs, steps, stream
        self.done, self.loss_sum, self.started = 0, 0.0, time.perf_counter()
        self.bar = (
            tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", file=stream, leave=True)
            if stream.isatty()
            else None
        )
        self.next_line = max(1, steps // lines)

    def update(self, losses) -> None:
        self.done += len(losses)
        self.loss_sum += float(sum(losses))
        mean = self.loss_sum / max(1, self.done)
        if self.bar is not None:
            self.bar.update(len(losses))
            self.bar.set_postfix(loss=f"{mean:.3f}")
        elif self.done >= self.next_line or self.done == self.steps:
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            print(
                f"epoch {self.epoch}/{self.epochs} step {self.done}/{self.steps} loss {mean:.4f} ({rate:.1f} steps/s)",
                file=self.stream,
                flush=True,
            )
            self.next_line += max(1, self.steps // 4)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CountProgress:
    """Progress through ``total`` items: a tqdm bar on a terminal, a plain line every ``lines``-th of the way
    otherwise."""

    def __init__(self, desc: str, total: int, unit: str, stream=None, lines: int = 10):
        stream = stream or sys.stderr
        self.desc, self.total, self.unit, self.stream = desc, total, unit, stream
        self.done, self.started, self.every = 0, time.perf_counter(), max(1, total // lines)
        self.next_line = self.every
        self.bar = tqdm(total=total, desc=desc, unit=unit, file=stream, leave=True) if stream.isatty() else None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.done >= self.next_line or self.done >= self.total:
            seconds = time.perf_counter() - self.started
            print(
                f"{self.desc}: {min(self.done, self.total)}/{self.total} {self.unit} ({seconds:.0f} s)",
                file=self.stream,
                flush=True,
            )
            self.next_line += self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
