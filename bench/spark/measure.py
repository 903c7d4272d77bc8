"""What one timed Spark run cost: CPU seconds from /proc, and Spark's own task metrics
from the session's event log.

CPU: utime + stime of the executor JVMs (every ``CoarseGrainedExecutorBackend``
process), of the Sluice servers (their pid files) and of the driver JVM, sampled just
before and just after the timed job. The servers are counted under sort shuffle too,
where they idle.

Task metrics: summed over every task that ended after the timed job started (the warm-up
is excluded), as Spark's listeners recorded them.
"""

import json
import os

TICKS = os.sysconf("SC_CLK_TCK")
EXECUTOR_MAIN = b"CoarseGrainedExecutorBackend"


def cpu_seconds(pid):
    """utime + stime of a live process in seconds; 0.0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # Fields after the command name (which may hold spaces): state is the first,
    # utime the 12th and stime the 13th.
    fields = stat.rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def executor_pids():
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if EXECUTOR_MAIN in f.read():
                    pids.append(int(name))
        except OSError:
            continue
    return pids


def read_pids(pid_files):
    pids = []
    for path in pid_files:
        try:
            with open(path) as f:
                pids.append(int(f.read().strip()))
        except (OSError, ValueError):
            continue
    return pids


class CpuMeter:
    """CPU of executors, servers and driver between ``start()`` and ``stop()``."""

    def __init__(self, server_pid_files, driver_pid):
        self.server_pid_files = server_pid_files
        self.driver_pid = driver_pid

    def _sample(self):
        groups = {
            "executors": executor_pids(),
            "servers": read_pids(self.server_pid_files),
            "driver": [self.driver_pid] if self.driver_pid else [],
        }
        return {g: {p: cpu_seconds(p) for p in pids} for g, pids in groups.items()}

    def start(self):
        self.before = self._sample()

    def stop(self):
        after = self._sample()
        used = {}
        for group, pids in after.items():
            # A process that started during the job counts from zero.
            used[group] = sum(t - self.before[group].get(p, 0.0) for p, t in pids.items())
        return used


# Spark's names in the event log -> ours; write time is in ns, fetch wait in ms.
TASK_FIELDS = {
    "Executor CPU Time": ("executor_cpu_s", 1e-9),
    "Executor Run Time": ("executor_run_s", 1e-3),
    "JVM GC Time": ("gc_s", 1e-3),
    "Memory Bytes Spilled": ("memory_bytes_spilled", 1),
    "Disk Bytes Spilled": ("disk_bytes_spilled", 1),
}
WRITE_FIELDS = {
    "Shuffle Bytes Written": ("shuffle_bytes_written", 1),
    "Shuffle Write Time": ("shuffle_write_s", 1e-9),
    "Shuffle Records Written": ("shuffle_records_written", 1),
}
READ_FIELDS = {
    "Fetch Wait Time": ("fetch_wait_s", 1e-3),
    "Remote Bytes Read": ("shuffle_bytes_read", 1),
    "Local Bytes Read": ("shuffle_bytes_read", 1),
    "Total Records Read": ("shuffle_records_read", 1),
}


def task_metrics(event_log, since_ms):
    """Sums of the task metrics above over tasks launched at or after ``since_ms``
    (epoch milliseconds), from a session's finished event log."""
    sums = {name: 0.0 for name, _ in
            list(TASK_FIELDS.values()) + list(WRITE_FIELDS.values()) + list(READ_FIELDS.values())}
    sums["tasks"] = 0
    sums["failed_tasks"] = 0
    with open(event_log) as f:
        for line in f:
            event = json.loads(line)
            if event.get("Event") != "SparkListenerTaskEnd":
                continue
            if event["Task Info"]["Launch Time"] < since_ms:
                continue
            sums["tasks"] += 1
            sums["failed_tasks"] += event.get("Task End Reason", {}).get("Reason") != "Success"
            metrics = event.get("Task Metrics") or {}
            for fields, source in ((TASK_FIELDS, metrics),
                                   (WRITE_FIELDS, metrics.get("Shuffle Write Metrics", {})),
                                   (READ_FIELDS, metrics.get("Shuffle Read Metrics", {}))):
                for key, (name, scale) in fields.items():
                    sums[name] += source.get(key, 0) * scale
    return sums
