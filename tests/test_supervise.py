"""`swarm-learn ui` stops on Ctrl-C / SIGTERM with nothing left: the supervisor against a stand-in
process tree (a parent that starts a grandchild, each optionally ignoring SIGTERM). The real
`dagster dev` is stopped the same way in the slow UI test."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from swarm_learn_assets.core.storage.locks import pid_alive, proc_stat

from .processes import descendants

TREE = """
import os, signal, subprocess, sys, time
stubborn = sys.argv[1] == "stubborn"
if stubborn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time\\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if stubborn else "") + \\
       "while True: time.sleep(1)"
grandchild = subprocess.Popen([sys.executable, "-c", code])
print(grandchild.pid, flush=True)
while True:
    time.sleep(1)
"""

SUPERVISOR = """
import sys
from swarm_learn_assets.supervise import run_until_signalled
print(run_until_signalled([sys.executable, "-c", sys.argv[1], sys.argv[2]], grace_s=float(sys.argv[3])), flush=True)
"""


def _tree_states(supervisor: int, grandchild: int) -> dict[int, str | None]:
    """pid → /proc state of the supervisor, its descendants and the grandchild (None: gone), for a
    failure message that says which process did not stop."""
    pids = [supervisor, *descendants(supervisor), grandchild]
    return {pid: (stat.state if (stat := proc_stat(pid)) else None) for pid in dict.fromkeys(pids)}


def _ignore_stop_signals() -> None:
    """What a shell's background job or a CI runner may hand down: SIGINT and SIGTERM ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _start(kind: str, grace: float, inherited_ignore: bool = False) -> tuple[subprocess.Popen, int]:
    supervisor = subprocess.Popen([sys.executable, "-c", SUPERVISOR, TREE, kind, str(grace)], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  preexec_fn=_ignore_stop_signals if inherited_ignore else None)  # fmt: skip
    grandchild = int(supervisor.stdout.readline())  # the tree is up once the grandchild's pid is printed
    return supervisor, grandchild


@pytest.mark.parametrize(("kind", "signals", "grace", "limit", "inherited_ignore"), [
    ("polite", [signal.SIGTERM], 30.0, 10.0, False),  # stops on the first signal, well inside the grace period
    ("polite", [signal.SIGINT], 30.0, 10.0, False),  # Ctrl-C
    # started as a background job that ignores SIGINT/SIGTERM: the tree must not inherit the ignoring
    # (it did: the supervisor started the tree before its own handlers replaced SIG_IGN)
    ("polite", [signal.SIGTERM], 30.0, 10.0, True),
    ("stubborn", [signal.SIGTERM], 1.0, 6.0, False),  # ignores SIGTERM: killed when the grace period ends
    ("stubborn", [signal.SIGTERM, signal.SIGINT], 60.0, 5.0, False),  # a second signal kills at once
])
def test_a_signal_stops_the_whole_tree(kind, signals, grace, limit, inherited_ignore):
    supervisor, grandchild = _start(kind, grace, inherited_ignore)
    started = time.monotonic()
    for i, signum in enumerate(signals):
        supervisor.send_signal(signum)
        if i == 0:  # handled (its message printed) before a second one is sent
            assert supervisor.stderr.readline().startswith("stopping")
    try:
        supervisor.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the supervisor still runs after {limit} s; its tree: {_tree_states(supervisor.pid, grandchild)}")
    assert time.monotonic() - started < limit
    assert int(supervisor.stdout.read().strip()) == 128 + signals[0]  # the exit code the supervisor reports
    assert not pid_alive(grandchild), f"grandchild {grandchild} outlived the supervisor"
