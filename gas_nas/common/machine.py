"""Which machine produced a result: its host name and processor.

Why: a study shared over PostgreSQL, or an evidence page filled over several sessions, pools
results from machines whose fp32 kernels (so the numbers) and speeds (so `seconds`) differ;
each result says where it came from. Imports no torch.
"""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (fp32 results differ between CPUs: their kernels differ)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(processor: str, threads: int | None = None) -> str:
    """"host (processor, N threads)": what a trial's record and the dashboard show."""
    return f"{platform.node()} ({processor}{f', {threads} thread(s)' if threads else ''})"


__all__ = ["cpu_model", "describe"]
