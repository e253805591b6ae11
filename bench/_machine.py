"""What the benchmarks share: is the machine busy, and wait until it is not.

Other processes on a 2-core machine distort every timing, so each benchmark waits for
an idle machine before it measures and says how loaded the machine was.
"""

from __future__ import annotations

import os
import time

QUIET_SHARE = 0.10  # the machine counts as idle below 10% busy (all cores together)


def busy_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has been busy since boot (None without /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(max_wait: float) -> float | None:
    """Sleep until the machine is idle for 2 s in a row (or ``max_wait`` passes).

    Returns the busy share of the machine in the last second sampled (None when unknown).
    """
    cores = os.cpu_count() or 1
    deadline = time.monotonic() + max_wait
    quiet_in_row = 0
    share: float | None = None
    while max_wait > 0:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        after = busy_cpu_seconds()
        if before is None or after is None:
            return None
        share = (after - before) / cores
        quiet_in_row = quiet_in_row + 1 if share < QUIET_SHARE else 0
        if quiet_in_row >= 2 or time.monotonic() > deadline:
            break
    return share


def load_note() -> str:
    """The 1-minute load average: other processes on the CPU distort every figure here."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "load average unknown"
    cores = os.cpu_count() or 1
    busy = "  (BUSY: other processes compete for the CPU; figures will be noisy)"
    return f"load average {one:.2f} on {cores} cores" + (busy if one > 0.5 else "")
