"""Processes as the bench sees them: CPU seconds and memory from /proc, fresh children timed.

Linux only (the bench's machines are). No service code here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (every thread), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and every live descendant (a worker and its pool processes)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            total += cpu_seconds(current)
            pending += children(current)
        except (OSError, ValueError):
            continue
    return total


def status_kib(pid: int, field: str) -> int | None:
    """A `Vm*` line of /proc/<pid>/status, in KiB (None when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    return None


def own_peak_kib() -> int:
    """VmHWM of this process: its own high-water mark (exec resets it, unlike ru_maxrss)."""
    return status_kib(os.getpid(), "VmHWM") or 0


@dataclass(frozen=True)
class ChildRun:
    wall: float
    cpu: float  # user + system of the child and whatever it waited for
    maxrss_kib: int
    report: dict[str, Any]


def run_module(module: str, *args: str, env: dict[str, str] | None = None) -> ChildRun:
    """`python -m module args` in a fresh interpreter; its last stdout line is JSON."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        env=None if env is None else {**os.environ, **env},
        text=True,
    )
    return _reap(process, started)


def run_command(command: list[str]) -> ChildRun:
    """Any program, timed the same way (no report)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, text=True)
    return _reap(process, started)


def _reap(process: subprocess.Popen[str], started: float) -> ChildRun:
    output = process.stdout.read() if process.stdout is not None else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
    lines = (output or "").strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    return ChildRun(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, report)
