"""Peak resident memory of this process, for the memory benchmarks."""

from __future__ import annotations

from pathlib import Path


def status_mib(*fields: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` given in kB (``VmRSS``, ``VmHWM``, ...), in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in fields:
            out[key] = int(value.split()[0]) // 1024
    missing = set(fields) - set(out)
    if missing:
        raise RuntimeError(f"no {sorted(missing)} in /proc/self/status (Linux only)")
    return out


def peak_rss_mib() -> int:
    """This process's high-water RSS (``VmHWM``), in MiB.

    Not ``ru_maxrss``: Linux carries the RSS a process had when it was forked into its
    ``ru_maxrss`` across exec, so a benchmark's spawned child would report at least its
    parent's RSS (measured: 1,052 MiB for a child whose own peak was 29 MiB).
    """
    return status_mib("VmHWM")["VmHWM"]
