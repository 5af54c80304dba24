"""Compute time per stage of a backend (segmentation, embedding), for benchmarks and progress.

Accelerators run queued work asynchronously: the clock is read only after the device has
finished what the stage queued, or the time of one stage would be billed to the next.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# calls whose own seconds are kept per stage: the last hour of a live stream at a 0.5 s step,
# so that a session running for days does not grow
KEPT_CALLS = 7200


class StageClock:
    """Seconds spent in each named stage, summed over calls, and the last calls' own. Stages
    may be timed from several threads at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=KEPT_CALLS))

    @contextmanager
    def stage(self, name: str, device: torch.device) -> Iterator[None]:
        synchronize(device)
        started = time.perf_counter()
        try:
            yield
        finally:
            synchronize(device)
            elapsed = time.perf_counter() - started
            with self._lock:
                self.seconds[name] += elapsed
                self.calls[name].append(elapsed)
