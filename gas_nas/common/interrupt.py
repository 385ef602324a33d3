"""Ctrl-C and SIGTERM during a search: ask the running cohort to stop at a safe point.

While a search runs, the first SIGINT or SIGTERM only sets a flag; the trainer checks it
every iteration and the search loop between steps, so every trial of the running cohort is
recorded as FAIL ("interrupted") and no database write is cut in half. A second signal
stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal
import threading

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(Exception):
    """A stop was requested: raised at the next safe point (between iterations, measurements
    or cohorts); the search then fails its running trials as "interrupted"."""


class StopRequest:
    """Use as a context manager around a search; call it to ask whether a stop was requested.
    A stop ends the block quietly (Interrupted at a safe point, or KeyboardInterrupt on a second
    signal) and `stopped` says it did, so every caller reports it the same way."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.stopped = False
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)

    @property
    def by(self) -> str:
        """"stopped by SIGTERM" (Ctrl-C before the handler was in place reads as SIGINT)."""
        return f"stopped by {signal.Signals(self.signum).name if self.signum else 'SIGINT'}"

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # asked twice: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
            for sig in EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        self.stopped = kind is not None and issubclass(kind, (Interrupted, KeyboardInterrupt))
        return self.stopped
