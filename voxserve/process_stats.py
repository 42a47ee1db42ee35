"""What one OS process holds right now: resident memory, open file descriptors, threads and (for
the calling process) its event loop's tasks. The Serve deployments report it in `info()` and the
ingress in `/stats`, so a soak run can watch every process for leaks; the soak client reads its
own and Ray's processes with the same function.

Read from `/proc` (Linux, where Ray Serve runs): no dependency. Elsewhere, or for a process that
has gone, the fields are None rather than an error, since a stats endpoint must not fail for them.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TypedDict

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcessStats(TypedDict):
    pid: int
    rss_bytes: int | None
    num_fds: int | None
    threads: int | None  # OS threads (Python's and native ones: ONNX, llama.cpp, gRPC)
    tasks: int | None  # asyncio tasks of the running loop; None for another process or no loop


def _rss(proc: Path) -> int | None:
    try:
        return int((proc / "statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _fds(proc: Path) -> int | None:
    try:
        return len(os.listdir(proc / "fd"))
    except OSError:
        return None


def _threads(proc: Path) -> int | None:
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _tasks() -> int | None:
    try:
        return len(asyncio.all_tasks(asyncio.get_running_loop()))
    except RuntimeError:  # no running loop in this thread
        return None


def read(pid: int | None = None) -> ProcessStats:
    """This process (with its running loop's task count) or another one by pid."""
    own = pid is None or pid == os.getpid()
    number = os.getpid() if pid is None else pid
    proc = Path("/proc/self" if own else f"/proc/{number}")
    return ProcessStats(pid=number, rss_bytes=_rss(proc), num_fds=_fds(proc),
                        threads=_threads(proc), tasks=_tasks() if own else None)
