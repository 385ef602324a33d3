"""Run a cohort's iteration eagerly, or on CUDA as one captured CUDA graph replayed per iteration.

The only CUDA-specific code of the trainer, kept small: a few warm-up iterations run eagerly
on a side stream (as capture requires), then one iteration is captured and replayed with the
cohort's static buffers (indices, noise, loss sums) refilled outside the graph by
`Cohort.draw()`. If capture fails, training goes on eagerly after one warning line: slower,
never different numbers. On a CPU this is always the eager path.
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

WARMUP_ITERATIONS = 3


def make_runner(cohort, use_graph: bool) -> Callable[[], None]:
    """A callable that runs one iteration of `cohort` (its buffers already drawn)."""
    if not use_graph:
        return cohort.step
    return _GraphRunner(cohort)


class _GraphRunner:
    def __init__(self, cohort):
        self.cohort = cohort
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.failed = False
        self.side = torch.cuda.Stream(device=cohort.device)

    def __call__(self) -> None:
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
        elif self.failed:
            self.cohort.step()
        elif self.calls <= WARMUP_ITERATIONS:
            self._on_side_stream(self.cohort.step)
        else:
            self._capture()
            if self.graph is not None:
                self.graph.replay()
            else:
                self.cohort.step()

    def _on_side_stream(self, fn: Callable[[], None]) -> None:
        current = torch.cuda.current_stream(self.cohort.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            fn()
        current.wait_stream(self.side)

    def _capture(self) -> None:
        torch.cuda.synchronize(self.cohort.device)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.cohort.step()
        except Exception as exc:  # noqa: BLE001 - any capture failure means: stay eager
            self.failed = True
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"gas-nas: warning: CUDA graph capture failed, training eagerly instead ({first[:200]})", file=sys.stderr)
            torch.cuda.synchronize(self.cohort.device)
            return
        self.graph = graph
