"""Running a long-lived child process tree (`dagster dev`: webserver, daemon, code servers) so that
Ctrl-C or SIGTERM stops all of it: the tree runs in its own session, a first signal asks the whole
group to stop, and whatever is still there after the grace period, or after a second signal, is
killed. Nothing is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .core.storage.locks import pid_alive

GRACE_S = 8.0  # dagster dev stops its webserver, daemon and code servers in a few seconds


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def run_until_signalled(command: Sequence[str], cwd: Path | None = None, grace_s: float = GRACE_S,
                        env: dict[str, str] | None = None) -> int:  # fmt: skip
    """Run `command` in a new session until it exits; SIGINT/SIGTERM are passed on to its whole
    process group (SIGTERM), a second signal or the end of `grace_s` kills the group. Returns the
    child's exit code (128 + signal when a signal stopped it)."""
    received: list[int] = []
    deadline: list[float] = []
    started: list[subprocess.Popen] = []

    def on_signal(signum: int, _frame) -> None:
        received.append(signum)
        if not started:  # the child is not there yet: it is stopped as soon as it is
            return
        if len(received) == 1:
            print(f"stopping (up to {grace_s:.0f} s; press Ctrl-C again to kill it at once)", file=sys.stderr, flush=True)
            deadline.append(time.monotonic() + grace_s)
            _signal_group(started[0].pid, signal.SIGTERM)
        else:
            _signal_group(started[0].pid, signal.SIGKILL)

    # Handlers first: a child started while SIGINT/SIGTERM were ignored here (a shell's background job,
    # a CI runner) would inherit the ignoring and never stop on SIGTERM; exec resets handled signals.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        child = subprocess.Popen(list(command), cwd=cwd, env=env, start_new_session=True)
    except BaseException:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        raise
    started.append(child)
    if received:
        on_signal(received.pop(), None)
    try:
        while True:
            try:
                code = child.wait(timeout=0.2)  # short waits, so the grace deadline is noticed
                break
            except subprocess.TimeoutExpired:
                if deadline and time.monotonic() > deadline[0]:
                    _signal_group(child.pid, signal.SIGKILL)
        # dagster dev is gone; its children get the rest of the grace period to finish stopping
        while deadline and time.monotonic() < deadline[0] and len(received) < 2 and pid_alive(child.pid, group=True):
            time.sleep(0.1)
    finally:
        _signal_group(child.pid, signal.SIGKILL)  # children that outlived dagster dev itself
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 + received[0] if received and code < 0 else code
