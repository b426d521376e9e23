"""A node killed with SIGKILL leaves no signing worker behind: each worker notices that the
process which started it is gone and ends, instead of idling forever as an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cli.launcher import wait_until
from federation_node.offices import signing_pool

# Stands in for a node: starts its signing workers, says their process ids, then waits to die.
NODE = """
import os, sys, time
from federation_node.offices import signing_pool
from signing.keys import SigningKey

signing_pool.workers = lambda: 2
signing_pool.warm_up(SigningKey.generate())
children = open(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read().split()
workers = [pid for pid in children if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
print(" ".join(workers), flush=True)
time.sleep(600)
"""


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, ended but not yet reaped, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_signing_workers_end_when_their_node_is_killed() -> None:
    node = subprocess.Popen(
        [sys.executable, "-c", NODE],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert node.stdout is not None
        workers = [int(pid) for pid in node.stdout.readline().split()]
        assert len(workers) == 2, "the stand-in node did not start two signing workers"
        assert all(_running(pid) for pid in workers)
        os.kill(node.pid, signal.SIGKILL)
        node.wait(timeout=10)
        wait_until(
            lambda: not any(_running(pid) for pid in workers),
            10 * signing_pool.PARENT_CHECK_S,
            "the orphaned signing workers to end",
        )
    finally:
        node.kill()
        node.wait(timeout=10)
