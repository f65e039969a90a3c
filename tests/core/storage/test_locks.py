"""Liveness of a pid or a process group: an exited process that nobody has reaped yet (a zombie)
is not alive, so nothing waits for it."""

from __future__ import annotations

import subprocess
import sys

from swarm_learn_assets.core.storage.locks import pid_alive, proc_stat


def _zombie(proc: subprocess.Popen) -> None:
    """Wait until the unreaped child has exited (its /proc state turns Z)."""
    proc.stdin.close()  # the child reads stdin to its end, then exits
    while (stat := proc_stat(proc.pid)) is not None and stat.state != "Z":
        pass


def test_a_running_process_and_its_group_are_alive_and_a_zombie_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                             start_new_session=True)  # its own process group, led by itself
    try:
        assert pid_alive(child.pid) and pid_alive(child.pid, group=True)
        _zombie(child)
        assert proc_stat(child.pid).state == "Z"  # still in the process table, unreaped
        assert not pid_alive(child.pid) and not pid_alive(child.pid, group=True)
    finally:
        child.kill()
        child.wait()
    assert not pid_alive(child.pid) and not pid_alive(child.pid, group=True)
