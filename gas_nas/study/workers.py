"""`--jobs K` on one machine: which device, how many CPU threads and what share of memory
each worker process gets, and starting the K-1 that are not this process.

Why: K processes that each use every core (OpenMP's default) fight over them. Measured on 2
cores (paper case 6, ms per iteration): one process alone 332; two at once with both cores each
1,222 each (0.54x the throughput of one alone); two with one thread each 590 each (1.13x). And
with several GPUs every worker would train on the first. So the machine is divided:
`plan_workers` is a pure function of K, the device asked for, the core count and the GPU count.

Imports neither torch nor Optuna: `--device` is parsed here while `--help` stays light.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

from gas_nas.trial.memory import MEMORY_SHARE_VAR

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # read by torch (intra-op threads), OpenMP and MKL at start


def parse_device(text: str) -> str:
    """`--device`: auto, cpu, cuda or cuda:N (N a device index); ValueError names what is allowed."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:(0|[1-9][0-9]{0,2})", text):
        return text
    raise ValueError(f"expected {DEVICE_NAMES}, got {text!r}")


@dataclass(frozen=True)
class Worker:
    """What one worker gets. Worker 0 is this process; the others are started with `env` added
    to their environment and `--device device`."""

    index: int
    device: str  # as the worker names it ("cuda:0" in a child that sees one device)
    label: str  # as this process names it (the physical device), for the printed line
    threads: int  # torch intra-op threads, and OpenMP's and MKL's
    memory_share: int  # processes drawing on the same memory (all of RAM on a CPU, one GPU's)
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        who = "this process" if self.index == 0 else f"worker {self.index + 1}"
        threads = f"{self.threads} CPU thread{'s' if self.threads > 1 else ''}"
        pool = "the RAM" if self.label == "cpu" else f"{self.label}'s memory"
        return f"{who}: {self.label}, {threads}" + (f", 1/{self.memory_share} of {pool}" if self.memory_share > 1 else "")


def plan_workers(jobs: int, device: str, cores: int, cuda_devices: int = 0, visible: str | None = None, thread_cap: int | None = None) -> list[Worker]:
    """Divide the machine among `jobs` workers (worker 0 is this process).

    `device` is resolved (cpu, cuda or cuda:N). On CUDA with `cuda_devices` n, worker i trains
    on device i mod n (with cuda:N, all on N), and a child sees only that device
    (`CUDA_VISIBLE_DEVICES`, mapped through `visible`, this process's own list, when it has one).
    CPU cores are divided as evenly as possible (at least one thread each), on CUDA too: the
    host side of K workers fights over cores as well. `thread_cap` (a user's OMP_NUM_THREADS)
    caps each share. Every worker's memory share is the number of workers on the same memory.
    """
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(cuda_devices)]
    slots: list[int | None] = [None] * jobs  # the (visible) device index each worker trains on
    if device.startswith("cuda"):
        fixed = device.partition(":")[2]
        slots = [int(fixed) if fixed else i % max(1, cuda_devices) for i in range(jobs)]
    workers = []
    for i in range(jobs):
        threads = max(1, cores // jobs + (i < cores % jobs))
        if thread_cap:
            threads = min(threads, thread_cap)
        env = {var: str(threads) for var in THREAD_VARS}
        slot = slots[i]
        if slot is None:
            own, label = "cpu", "cpu"
        else:
            label = f"cuda:{slot}"
            own = label if i == 0 else "cuda:0"  # this process keeps its view; a child sees one device
            if slot < len(ids):
                env["CUDA_VISIBLE_DEVICES"] = ids[slot]
        share = slots.count(slot)  # on a CPU (slot None) every worker shares the RAM
        env[MEMORY_SHARE_VAR] = str(share)
        workers.append(Worker(index=i, device=own, label=label, threads=threads, memory_share=share, env=env))
    return workers


def cpu_cores() -> int:
    """The cores this process may run on (its affinity: taskset, cpusets), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_cap() -> int | None:
    """A user's OMP_NUM_THREADS, when it is a positive integer: no worker gets more."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def divide(jobs: int, device) -> list[Worker]:
    """The plan for this machine (`plan_workers`), and this process takes worker 0's threads.
    One job keeps the machine as it is: the device as named, torch's own thread count, and the
    memory share its parent gave it (a worker of another `--jobs`), else all."""
    import dataclasses

    import torch

    plan = plan_workers(jobs, str(device), cpu_cores(), torch.cuda.device_count() if device.type == "cuda" else 0,
                        os.environ.get("CUDA_VISIBLE_DEVICES"), thread_cap())
    if jobs == 1:
        given = os.environ.get(MEMORY_SHARE_VAR, "").strip()
        share = int(given) if given.isdigit() and int(given) > 0 else 1
        return [dataclasses.replace(plan[0], device=str(device), label=str(device), threads=torch.get_num_threads(), memory_share=share)]
    torch.set_num_threads(plan[0].threads)
    return plan


def start(workers: list[Worker], argv: list[str], env: dict[str, str]) -> list[subprocess.Popen]:
    """Start every worker but this process: `argv` plus `--device`, `env` plus its own (stdout quiet, errors shown)."""
    return [subprocess.Popen([*argv, "--device", w.device], stdout=subprocess.DEVNULL, env={**env, **w.env}) for w in workers[1:]]


__all__ = ["Worker", "cpu_cores", "divide", "parse_device", "plan_workers", "start", "thread_cap"]
