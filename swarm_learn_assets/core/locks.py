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


def pid_alive(pid: int, group: bool = False) -> bool:
    """Whether a process with this pid exists on this machine (the owner of a lock, temp file or
    run); with `group`, whether any process of the process group `pid` still exists."""
    try:
        (os.killpg if group else os.kill)(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
