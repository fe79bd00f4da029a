"""CPU and memory of the demo's processes: per node over the run, and the simultaneous sums of all of them."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass
class NodeUsage:
    """CPU and memory of one node process over the run."""

    label: str
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    peak_pss_bytes: int = 0  # proportional set size: shared pages split among the processes mapping them
    exit_code: int | None = None


def pss_bytes(pid: int) -> int | None:
    """Proportional set size of a process (``/proc/<pid>/smaps_rollup``), bytes; None when unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def sample_usage(launcher, usage: dict[str, NodeUsage]) -> tuple[int, int]:
    """Update CPU and peak memory per node process; returns this moment's (RSS, PSS) sums, bytes."""
    rss_total = pss_total = 0
    for node in launcher.nodes:
        entry = usage.setdefault(node.label, NodeUsage(node.label))
        try:
            proc = psutil.Process(node.process.pid)
            with proc.oneshot():
                times = proc.cpu_times()
                rss = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        pss = pss_bytes(node.process.pid) or 0
        entry.cpu_s = max(entry.cpu_s, times.user + times.system)
        entry.peak_rss_bytes = max(entry.peak_rss_bytes, rss)
        entry.peak_pss_bytes = max(entry.peak_pss_bytes, pss)
        rss_total += rss
        pss_total += pss
    return rss_total, pss_total


def sample_memory_total(result, launchers: list, driver_proc) -> None:
    """One simultaneous sample of every process (nodes and this driver); keeps the peak sums."""
    rss_total = driver_proc.memory_info().rss
    pss_total = pss_bytes(driver_proc.pid) or 0
    for launcher in launchers:
        rss, pss = sample_usage(launcher, result.usage)
        rss_total += rss
        pss_total += pss
    result.peak_rss_bytes_total = max(result.peak_rss_bytes_total, rss_total)
    result.peak_pss_bytes_total = max(result.peak_pss_bytes_total, pss_total)
