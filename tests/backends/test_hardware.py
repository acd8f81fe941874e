"""The llama.cpp thread rule (backends/text/hardware.py) on topologies written as sysfs trees in the test, and on
this machine's own; the STUDIO_THREADS / STUDIO_THREADS_BATCH settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backends.text.hardware import CpuTopology, cpu_topology, plan_threads
from config import Settings


def sysfs(root: Path, siblings: dict[int, str], l3: str | None = "32768K") -> Path:
    """A /sys/devices/system/cpu tree: cpuN/topology/thread_siblings_list and an L3 entry on cpu0."""
    for cpu, text in siblings.items():
        topo = root / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "thread_siblings_list").write_text(text + "\n")
    if l3:
        index = root / "cpu0" / "cache" / "index3"
        index.mkdir(parents=True)
        (index / "level").write_text("3\n")
        (index / "size").write_text(l3 + "\n")
    return root


def test_hyperthreads_count_once_and_one_core_is_left_to_the_app(tmp_path: Path) -> None:
    # 4 cores with 2 hyper-threads each, numbered the way Linux does on x86 (siblings n and n+4).
    tree = sysfs(tmp_path, {n: f"{n % 4},{n % 4 + 4}" for n in range(8)})
    topo = cpu_topology(range(8), sys_cpu=tree, cpu_max=tmp_path / "none")
    assert (topo.logical, topo.physical, topo.quota, topo.l3_bytes) == (8, 4, None, 32 * 2**20)
    plan = plan_threads(topo)
    assert (plan.n_threads, plan.n_threads_batch) == (3, 3)


def test_ranges_and_lists_name_the_same_core(tmp_path: Path) -> None:
    tree = sysfs(tmp_path, {0: "0-1", 1: "0,1", 2: "2-3", 3: "2,3"}, l3=None)
    topo = cpu_topology(range(4), sys_cpu=tree, cpu_max=tmp_path / "none")
    assert (topo.physical, topo.l3_bytes) == (2, None)


def test_only_the_cpus_this_process_may_use_count(tmp_path: Path) -> None:
    tree = sysfs(tmp_path, {n: str(n) for n in range(16)})
    topo = cpu_topology([2, 3, 4], sys_cpu=tree, cpu_max=tmp_path / "none")
    assert (topo.logical, topo.physical) == (3, 3)
    assert plan_threads(topo).n_threads == 2


def test_a_cgroup_quota_caps_the_threads(tmp_path: Path) -> None:
    # A container given 2.5 CPUs on a 16-core host: 3 usable, so 2 threads, not 15.
    tree = sysfs(tmp_path, {n: str(n) for n in range(16)})
    quota = tmp_path / "cpu.max"
    quota.write_text("250000 100000\n")
    topo = cpu_topology(range(16), sys_cpu=tree, cpu_max=quota)
    assert (topo.physical, topo.quota, topo.usable_cores) == (16, 3, 3)
    assert plan_threads(topo).n_threads == 2
    quota.write_text("max 100000\n")
    assert cpu_topology(range(16), sys_cpu=tree, cpu_max=quota).quota is None


def test_unknown_topology_counts_each_cpu_as_a_core_and_never_plans_zero(tmp_path: Path) -> None:
    topo = cpu_topology(range(2), sys_cpu=tmp_path / "missing", cpu_max=tmp_path / "none")
    assert (topo.logical, topo.physical) == (2, 2)
    single = CpuTopology(logical=1, physical=1, quota=None, l3_bytes=None)
    assert (plan_threads(single).n_threads, plan_threads(single).n_threads_batch) == (1, 1)


def test_settings_override_the_rule() -> None:
    topo = CpuTopology(logical=8, physical=4, quota=None, l3_bytes=None)
    assert (plan_threads(topo, 4).n_threads, plan_threads(topo, 4).n_threads_batch) == (4, 4)
    plan = plan_threads(topo, None, 2)
    assert (plan.n_threads, plan.n_threads_batch) == (3, 2)
    assert plan.reason.startswith("set")


def test_this_machine_is_read_from_its_own_affinity() -> None:
    topo = cpu_topology()
    assert topo.logical == len(os.sched_getaffinity(0))
    assert 1 <= topo.physical <= topo.logical
    plan = plan_threads(topo)
    assert 1 <= plan.n_threads <= topo.physical


def test_thread_settings_are_read_and_validated_from_the_environment() -> None:
    settings = Settings.from_env({"STUDIO_THREADS": "3", "STUDIO_THREADS_BATCH": "2"})
    assert (settings.n_threads, settings.n_threads_batch) == (3, 2)
    assert Settings.from_env({}).n_threads is None
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ValueError, match="STUDIO_THREADS"):
            Settings.from_env({"STUDIO_THREADS": bad})
