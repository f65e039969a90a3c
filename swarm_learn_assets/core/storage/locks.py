"""Advisory file locks between processes: concurrent runs (the UI's and a CLI's, or several
trainings) share caches and the instance, and must take turns where a step is not idempotent."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive `flock` on `path` (created if missing) for the block. With `blocking=False`
    it yields False at once instead of waiting when another process holds it. The kernel releases
    the lock when the holder dies, so a killed run never leaves it taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat this project reads."""

    pid: int
    state: str  # "Z": a zombie, exited and waiting for its reaper
    ppid: int
    pgrp: int
    session: int

    @property
    def running(self) -> bool:
        return self.state != "Z"


def proc_stat(pid: int) -> ProcStat | None:
    """The process's /proc/<pid>/stat, or None once it is gone (or where there is no /proc)."""
    try:
        # the command name in parentheses may hold spaces; the fields after it are fixed
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]))


def all_processes() -> list[ProcStat]:
    found = (proc_stat(int(p.name)) for p in _PROC.iterdir() if p.name.isdigit())
    return [s for s in found if s is not None]


def pid_alive(pid: int, group: bool = False) -> bool:
    """Whether a process with this pid still runs on this machine (the owner of a lock, temp file or
    run); with `group`, whether any process of the process group `pid` still runs. A zombie does not
    count: it has exited, and an orphan's zombie may wait long for a reaper that is not `init` (in a
    container, PID 1 may never reap it), so waiting for it would wait for nothing."""
    if (_PROC / "self" / "stat").is_file():
        if not group:
            stat = proc_stat(pid)
            return stat is not None and stat.running
        return any(s.pgrp == pid and s.running for s in all_processes())
    try:  # no /proc: the kernel's own check, zombies included
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
