"""Which started runs `usage-etl` marks failed as orphaned (`pipelines/run_owner.py`): only
those whose process is known to be gone, never a run of another pid namespace on this machine
(containers sharing the host name), always those of an earlier boot."""

from __future__ import annotations

import os
import subprocess
import sys

from pipelines.run_owner import NAMESPACE_TAG, PID_TAG, _gone, owner_tags


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_of_this_namespace_is_gone_only_when_its_process_is() -> None:
    mine = owner_tags()
    assert mine[PID_TAG] == str(os.getpid())
    assert not _gone(mine, os.getpid())
    assert not _gone(mine, os.getppid())  # alive
    assert _gone(mine, dead_pid())


def test_a_run_of_another_pid_namespace_is_left_alone() -> None:
    boot, _, _ = owner_tags()[NAMESPACE_TAG].partition("/")
    other = {NAMESPACE_TAG: f"{boot}/4026531999"}
    assert not _gone(other, dead_pid())  # its process ids mean nothing here


def test_a_run_of_an_earlier_boot_is_gone() -> None:
    _, _, namespace = owner_tags()[NAMESPACE_TAG].partition("/")
    earlier = {NAMESPACE_TAG: f"00000000-0000-0000-0000-000000000000/{namespace}"}
    assert _gone(earlier, os.getpid())  # even a process id alive now: another boot's


def test_runs_tagged_before_namespaces_were_recorded_are_judged_by_process_id() -> None:
    assert _gone({}, dead_pid())
    assert not _gone({}, os.getppid())
