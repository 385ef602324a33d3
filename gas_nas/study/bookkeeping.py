"""A search's work after training, kept small and off the training path.

- `StudyPlot` refreshes the dashboard's study plot at a bounded rate: a rebuild reads every
  trial of the study, so rebuilding after each trial made a search quadratic.
- `Recorder` runs each finished cohort's recording (sample grids, loss plots, artifact uploads,
  the record, tell, the note, progress lines) in order, either at once or on one worker thread
  while the next cohort trains (CUDA: the device stays busy; a CPU would only share its cores).
- `AtomicFileStore` is Optuna's file artifact store writing each file whole or not at all.

The search tells a trial COMPLETE only after its artifacts and record are stored, so a stop
or a crash at any point leaves every COMPLETE trial whole; the rest are failed (a stop) or
left RUNNING for the heartbeat check to fail and retry (a kill).
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable

from optuna.artifacts import FileSystemArtifactStore

from gas_nas.common.paths import atomic_write

PLOT_INTERVAL_S = 5.0  # the study plot is rebuilt at most this often during a search
PLOT_SHARE = 0.05  # and takes at most this share of the search's time (a rebuild reads every trial)


class StudyPlot:
    """Refresh the study plot after a trial when `interval` seconds have passed since the last
    refresh (and 20x the last rebuild's cost, so a big study's plot stays under `share` of
    the time); always on `flush`, which the search calls when it ends, however it ends.
    The first finished trial of a search refreshes it at once."""

    def __init__(self, refresh: Callable[[], None], interval: float = PLOT_INTERVAL_S, share: float = PLOT_SHARE, clock: Callable[[], float] = time.monotonic):
        self._refresh, self.interval, self.share, self.clock = refresh, interval, share, clock
        self.due = -float("inf")
        self.stale = False
        self.refreshes = 0

    def trial_done(self) -> None:
        self.stale = True
        if self.clock() >= self.due:
            self.flush()

    def flush(self) -> None:
        if not self.stale:
            return
        start = self.clock()
        self._refresh()
        took = self.clock() - start
        self.stale, self.refreshes = False, self.refreshes + 1
        self.due = self.clock() + max(self.interval, took / self.share if self.share > 0 else 0.0)


class Recorder:
    """Runs recording jobs in submission order. Inline (`overlap=False`) a job runs in `submit`;
    with overlap it runs on one worker thread, and `submit` waits while `max_pending` jobs are
    still unfinished (a bounded queue: a slow storage slows the search instead of piling up
    cohorts). A job's exception is raised in the submitting thread at the next `submit` or `drain`."""

    def __init__(self, overlap: bool, max_pending: int = 1):
        self.overlap = overlap
        self.max_pending = max_pending
        self.pending: list[Future] = []
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gas-nas-recorder") if overlap else None

    def submit(self, job: Callable[[], None]) -> None:
        if self.pool is None:
            job()
            return
        self._settle(keep=self.max_pending - 1)
        self.pending.append(self.pool.submit(job))

    def drain(self) -> None:
        """Wait until every submitted job is done; raise the first job error."""
        self._settle(keep=0)

    def _settle(self, keep: int) -> None:
        while len(self.pending) > max(keep, 0):
            self.pending.pop(0).result()  # re-raises the job's exception here
        for future in [f for f in self.pending if f.done()]:
            self.pending.remove(future)
            future.result()

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker (errors are left to `drain`)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AtomicFileStore(FileSystemArtifactStore):
    """Optuna's file artifact store, but a file appears under its artifact id only when whole
    (written beside it, then renamed), so no artifact a trial lists is ever cut short."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        with atomic_write(self._get_filepath(artifact_id), "wb") as f:
            shutil.copyfileobj(content_body, f)


__all__ = ["AtomicFileStore", "PLOT_INTERVAL_S", "Recorder", "StudyPlot"]
