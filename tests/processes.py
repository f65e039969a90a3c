"""Reading Linux's /proc for the tests that check no process is left behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str  # "Z": a zombie waiting for its reaper, which has stopped running
    ppid: int
    session: int

    @property
    def running(self) -> bool:
        return self.state != "Z"


def proc_stat(pid: int) -> ProcStat | None:
    """The process's /proc/<pid>/stat, or None once it is gone."""
    try:
        # the command name in parentheses may hold spaces; the fields after it are fixed
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return ProcStat(pid, fields[0], int(fields[1]), int(fields[3]))


def all_processes() -> list[ProcStat]:
    found = (proc_stat(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [s for s in found if s is not None]


def running(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat.running


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in all_processes():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running_in_session(sid: int) -> list[int]:
    return [s.pid for s in all_processes() if s.session == sid and s.running]


def gone_within(pids: Callable[[], list[int]], seconds: float) -> list[int]:
    """The processes `pids()` names, polled until there are none or `seconds` pass: a killed process
    group's members die asynchronously, a moment after the signal, and later still on a loaded box."""
    deadline = time.monotonic() + seconds
    while (left := pids()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left
