"""A progress bar for the long operations (deploy copies, UF2 copies): one line on stderr,
redrawn in place on a terminal; on a pipe or a file, a line at every quarter, so logs stay
short and a CI log still shows the operation advancing."""

from __future__ import annotations

import sys
import time


class Bar:
    def __init__(self, what: str, total: int, stream=None, width: int = 30) -> None:
        self.what = what
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0
        self._quarter = -1
        self.t0 = time.monotonic()

    def update(self, done: int) -> None:
        self.done = min(done, self.total)
        frac = self.done / self.total
        if self.tty:
            n = int(frac * self.width)
            self.stream.write(f"\r{self.what} [{'#' * n}{'.' * (self.width - n)}] "
                              f"{frac * 100:3.0f}% {self._size()}")
            self.stream.flush()
        else:
            q = int(frac * 4)
            if q != self._quarter:
                self._quarter = q
                self.stream.write(f"{self.what}: {frac * 100:3.0f}% {self._size()}\n")
                self.stream.flush()

    def advance(self, n: int) -> None:
        self.update(self.done + n)

    def finish(self) -> None:
        self.update(self.total)
        if self.tty:
            self.stream.write(f" {time.monotonic() - self.t0:.1f} s\n")
            self.stream.flush()

    def _size(self) -> str:
        if self.total >= 100_000:
            return f"{self.done / 1e6:.2f}/{self.total / 1e6:.2f} MB"
        return f"{self.done}/{self.total} bytes"
