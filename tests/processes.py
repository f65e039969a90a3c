"""Reading Linux's /proc (through `core.locks`) for the tests that check no process is left behind."""

from __future__ import annotations

import time
from collections.abc import Callable

from swarm_learn_assets.core.storage.locks import all_processes


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
