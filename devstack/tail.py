"""Follow log files and echo their lines, each prefixed with its process's name (`make run`)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TextIO

POLL_SECONDS = 0.2


class LogTailer:
    """One thread per followed file; `close()` prints what is left, then joins them all."""

    def __init__(self, out: TextIO, *, width: int = 16) -> None:
        self._out = out
        self._width = width
        self._lock = threading.Lock()  # one whole line at a time, whichever thread prints
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    def print(self, text: str) -> None:
        """Print a block of text without interleaving with followed lines."""
        with self._lock:
            self._out.write(text if text.endswith("\n") else text + "\n")
            self._out.flush()

    def follow(self, name: str, path: Path) -> None:
        """Echo `path` from its start (it may not exist yet) until `close()`."""
        thread = threading.Thread(
            target=self._follow, args=(name, path), name=f"tail-{name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def close(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _emit(self, name: str, lines: list[str]) -> None:
        prefix = f"{name:>{self._width}} | "
        self.print("".join(prefix + line + "\n" for line in lines))

    def _follow(self, name: str, path: Path) -> None:
        while not path.exists():
            if self._closing.wait(POLL_SECONDS):
                return
        partial = b""
        with path.open("rb") as log:
            while True:
                closing = self._closing.is_set()  # read once more after close() was asked
                if os.fstat(log.fileno()).st_size < log.tell():
                    log.seek(0)  # truncated: a restarted process writes its log afresh
                    partial = b""
                chunk = log.read()
                if chunk:
                    *complete, partial = (partial + chunk).split(b"\n")
                    if complete:
                        self._emit(name, [_text(line) for line in complete])
                elif closing:
                    break
                else:
                    self._closing.wait(POLL_SECONDS)
        if partial:
            self._emit(name, [_text(partial)])


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").rstrip("\r")
