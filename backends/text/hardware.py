"""How many CPU threads llama.cpp gets, chosen from this machine's hardware: the cores this process may run on
(affinity mask, SMT siblings counted once, capped by a cgroup CPU quota). The rule and the numbers behind it are in
bench/decode_bench.py; STUDIO_THREADS and STUDIO_THREADS_BATCH override it."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class CpuTopology:
    logical: int  # CPUs this process may run on
    physical: int  # distinct cores among them (hyper-threads of one core counted once)
    quota: int | None  # CPUs a cgroup limit allows (cpu.max, rounded up); None = no limit
    l3_bytes: int | None  # last-level cache of CPU 0, where the kernel reports it

    @property
    def usable_cores(self) -> int:
        return max(1, min(self.physical, self.quota) if self.quota else self.physical)


@dataclass(frozen=True)
class ThreadPlan:
    n_threads: int  # decoding (one token at a time: memory-bound)
    n_threads_batch: int  # prompt processing (batches of tokens: compute-bound)
    reason: str


def cpu_topology(
    cpus: Iterable[int] | None = None, sys_cpu: Path = SYS_CPU, cpu_max: Path = CGROUP_CPU_MAX
) -> CpuTopology:
    """Read the topology of `cpus` (default: this process's affinity mask) from sysfs. A CPU whose topology
    cannot be read counts as its own core, so an unknown machine is never under-counted."""
    allowed = sorted(set(cpus) if cpus is not None else _affinity())
    cores: set[str] = set()
    for cpu in allowed:
        siblings = _read(sys_cpu / f"cpu{cpu}" / "topology" / "thread_siblings_list")
        cores.add(_canonical_cpu_list(siblings) if siblings else f"cpu{cpu}")
    return CpuTopology(
        logical=len(allowed),
        physical=max(1, len(cores)),
        quota=_quota(cpu_max),
        l3_bytes=_l3_bytes(sys_cpu / f"cpu{allowed[0] if allowed else 0}" / "cache"),
    )


def plan_threads(topology: CpuTopology, n_threads: int | None = None, n_threads_batch: int | None = None) -> ThreadPlan:
    """Threads for llama.cpp: one per usable physical core, less one core left to the rest of the app (the web
    server, tokenising and streaming replies, the document worker, a second user), never fewer than one.

    Why: llama.cpp's threads meet at a barrier after every operation (hundreds per token); when any of them is
    descheduled, the others wait, so a thread per core with anything else running costs far more than the core
    adds. Measured on this 2-core machine while other work ran (bench/decode_bench.py, load 3-6, wall clock): 2 threads
    decoded at 1-40 tok/s and processed prompts at 24-80 tok/s, 1 thread at 44-137 and 74-230; llama-cpp-python's old
    default (1 decode, 2 prompt threads) processed prompts at 24-150 tok/s. Hyper-threads share their core's
    load units and arithmetic, which decoding (memory-bound) and prompts (compute-bound) already fill, so they are
    not counted. Settings override either number."""
    cores = topology.usable_cores
    auto = max(1, cores - 1)
    decode = n_threads if n_threads and n_threads > 0 else auto
    batch = n_threads_batch if n_threads_batch and n_threads_batch > 0 else (n_threads if n_threads else auto)
    source = "set" if n_threads or n_threads_batch else "auto"
    reason = (
        f"{source}: {decode} decode / {batch} prompt threads; {topology.logical} CPUs, {topology.physical} cores"
        + (f", quota {topology.quota}" if topology.quota else "")
    )
    return ThreadPlan(decode, batch, reason)


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _canonical_cpu_list(text: str) -> str:
    """'0-1' and '0,1' name the same core: expand ranges so both become the same key."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            cpus.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            return text
    return ",".join(map(str, sorted(cpus)))


def _quota(cpu_max: Path) -> int | None:
    """cgroup v2 'cpu.max' is '<quota> <period>' in microseconds, or 'max <period>' for no limit."""
    text = _read(cpu_max)
    if not text:
        return None
    quota, _, period = text.partition(" ")
    try:
        return max(1, math.ceil(int(quota) / int(period or 100000)))
    except ValueError:  # "max"
        return None


def _l3_bytes(cache_dir: Path) -> int | None:
    try:
        indexes = sorted(cache_dir.glob("index*"))
    except OSError:
        return None
    for index in indexes:
        if _read(index / "level") == "3":
            size = _read(index / "size") or ""
            units = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}
            try:
                return int(size[:-1]) * units[size[-1]] if size and size[-1] in units else int(size)
            except ValueError:
                return None
    return None
