"""Which process runs a `usage-etl run`, and what becomes of a run whose process is gone.

`usage-etl run` executes in its own process (`execute_in_process`): when that process is killed
outright (`kill -9`, an out-of-memory kill, a machine restart) nothing records the end of the
run, and Dagster's instance keeps it `STARTED` for ever (the UI shows it running; run monitoring
watches only runs a run launcher started, under the daemon). So each run is tagged with the host
and process id that run it (`owner_tags`), and `fail_orphaned_runs` marks failed, through
Dagster's own `DagsterInstance.report_run_failed`, every started run of this host whose process
no longer exists. `usage-etl run` does so before it starts, `prune --dagster-history` before it
selects what to delete. Runs of other hosts and runs without the tags (started from the UI or
`dg launch`) are left alone; a process id reused since is taken as alive (the run stays).

A host name alone does not say whose process ids these are: containers of one pod, or started
with the host's network, share the host name but not the process ids. So the tags also hold
the machine's boot id and this process's pid namespace (`NAMESPACE_TAG`): a run of another pid
namespace on the same boot is left alone (its process cannot be seen from here), a run of an
earlier boot of this host is gone (the machine restarted), and only within one namespace is
the process id looked up.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster import DagsterInstance

HOST_TAG = "usage-etl/host"
PID_TAG = "usage-etl/pid"
NAMESPACE_TAG = "usage-etl/pid-namespace"


def _namespace() -> tuple[str, str]:
    """(boot id of the machine, id of this process's pid namespace); '' where unknown."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        boot = ""
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return boot, namespace


def owner_tags() -> dict[str, str]:
    """The tags naming this process as the one that runs the run."""
    boot, namespace = _namespace()
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        NAMESPACE_TAG: f"{boot}/{namespace}",
    }


def _gone(tags: dict[str, str], pid: int) -> bool:
    """Whether the process that tagged a run of this host is gone (see module doc)."""
    recorded = tags.get(NAMESPACE_TAG)
    if recorded is not None:
        boot, _, namespace = recorded.partition("/")
        here_boot, here_namespace = _namespace()
        if boot and here_boot and boot != here_boot:
            return True  # an earlier boot of this machine: every process of it is gone
        if namespace != here_namespace:
            return False  # another pid namespace: its process ids mean nothing here
    return pid != os.getpid() and not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def orphaned_runs(instance: DagsterInstance) -> list[tuple[str, int]]:
    """(run id, process id) of this host's started runs whose process is gone."""
    from dagster import DagsterRunStatus, RunsFilter

    started = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    here = socket.gethostname()
    found = []
    for record in instance.get_run_records(RunsFilter(statuses=started, tags={HOST_TAG: here})):
        tags = dict(record.dagster_run.tags)
        text = tags.get(PID_TAG, "")
        if text.isdigit() and _gone(tags, int(text)):
            found.append((record.dagster_run.run_id, int(text)))
    return found


def fail_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed this host's started runs whose process is gone; their run ids."""
    failed = []
    for run_id, pid in orphaned_runs(instance):
        run = instance.get_run_by_id(run_id)
        if run is None:
            continue
        instance.report_run_failed(
            run,
            message=(
                f"the usage-etl process that ran it (pid {pid} on {socket.gethostname()}) "
                "is gone (killed or the machine restarted); marked failed by usage-etl"
            ),
        )
        failed.append(run_id)
    return failed
