"""Crash points for the crash-safety tests: with `SWARM_LEARN_CRASH_AT=<point>:<n>` the process
group is killed with SIGKILL the n-th time this process passes the named point, as a power cut or
the kernel's OOM killer would stop it. Unset (always, outside those tests), a point costs one
environment lookup."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

CRASH_ENV = "SWARM_LEARN_CRASH_AT"
WRITE = "write"  # after a file was renamed into place (core/storage/atomic.py)
TRAIN_STEP = "train_step"  # after an optimizer step (training/lora.py)

_passed: Counter[str] = Counter()
_lock = threading.Lock()


def crash_point(name: str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, count = spec.partition(":")
    if point != name:
        return
    with _lock:
        _passed[name] += 1
        hit = _passed[name] == int(count or 1)
    if hit:
        os.killpg(os.getpgid(0), signal.SIGKILL)
