"""Advisory file locks between processes: concurrent runs (the UI's and a CLI's, or several
trainings) share caches and the instance, and must take turns where a step is not idempotent."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state, process group) from /proc/<pid>/stat, or None once the process is gone."""
    try:
        # the command name in parentheses may hold spaces; the fields after it are fixed
        fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def pid_alive(pid: int, group: bool = False) -> bool:
    """Whether a process with this pid still runs on this machine (the owner of a lock, temp file or
    run); with `group`, whether any process of the process group `pid` still runs. A zombie does not
    count: it has exited, and an orphan's zombie may wait long for a reaper that is not `init` (in a
    container, PID 1 may never reap it), so waiting for it would wait for nothing."""
    if (_PROC / "self" / "stat").is_file():
        if not group:
            state = _proc_state(pid)
            return state is not None and state[0] != "Z"
        members = (_proc_state(int(p.name)) for p in _PROC.iterdir() if p.name.isdigit())
        return any(m is not None and m[1] == pid and m[0] != "Z" for m in members)
    try:  # no /proc: the kernel's own check, zombies included
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
