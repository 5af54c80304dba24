"""One backend's models serving several streams at once, from any threads."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from streamdiar.core.backend import Backend
from streamdiar.core.types import LocalSpeakers


@dataclass(frozen=True)
class _WaitingCall:
    waveforms: torch.Tensor
    step_samples: int | None
    streams: Sequence[object | None] | None
    result: Future[list[LocalSpeakers]]


def merged_streams(calls: list[_WaitingCall]) -> list[object | None]:
    """The stream of each window of calls merged into one batch, None for windows of a call
    that names none."""
    return [
        stream
        for call in calls
        for stream in (call.streams if call.streams is not None else [None] * len(call.waveforms))
    ]


class SharedBackend:
    """A backend whose models compute in one thread of their own, one call at a time, whatever
    stream or thread asks; the windows of calls that wait meanwhile go through the models
    together, as one batch of at most `max_windows` (a call's own windows are never split).

    The models are loaded once and not copied per stream; each stream keeps its own speakers
    (its own stitcher), and its windows give the results they would give alone (within float
    rounding). Merging waiting calls is what lets several live streams keep up: on a 2-core CPU
    the default backend takes about 150 ms for one window and 240 ms for four together. One
    thread, not only one call at a time: each thread that allocates gets its own malloc arena,
    so the models' large buffers allocated from every pushing thread would keep growing the
    memory held; and torch's ops called from a program's main thread ran up to 30 times slower
    than from another thread on a busy 2-core CPU. Everything but `infer` and `to` is the
    wrapped backend's own.
    """

    def __init__(self, backend: Backend, max_windows: int) -> None:
        self._backend = backend
        self.max_windows = max_windows
        self._waiting: deque[_WaitingCall] = deque()
        self._lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamdiar-models")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    @property
    def device(self) -> torch.device:
        return self._backend.device

    def to(self, device: torch.device) -> SharedBackend:
        """Moves the models for every stream (a failed accelerator fails for all of them)."""
        self._worker.submit(self._backend.to, device).result()
        return self

    def infer(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None = None,
        streams: Sequence[object | None] | None = None,
    ) -> list[LocalSpeakers]:
        result: Future[list[LocalSpeakers]] = Future()
        with self._lock:
            self._waiting.append(_WaitingCall(waveforms, step_samples, streams, result))
        # one run per call: a run finds its call already done when an earlier run took it along
        self._worker.submit(self._run_waiting)
        return result.result()

    def _run_waiting(self) -> None:
        """In the models' thread: the calls waiting, oldest first, as one batch. Only calls of
        independent windows (no `step_samples`) are merged; a call of consecutive windows (a
        file's, whose trunk pass is shared among them) runs alone, as it was asked."""
        calls: list[_WaitingCall] = []
        windows = 0
        with self._lock:
            while self._waiting:
                call = self._waiting[0]
                if calls and (
                    call.step_samples is not None
                    or calls[0].step_samples is not None
                    or windows + len(call.waveforms) > self.max_windows
                    or call.waveforms.shape[1:] != calls[0].waveforms.shape[1:]
                ):
                    break
                calls.append(self._waiting.popleft())
                windows += len(call.waveforms)
        if not calls:
            return
        try:
            if len(calls) == 1:
                call = calls[0]
                results = self._backend.infer(call.waveforms, call.step_samples, call.streams)
            else:
                results = self._backend.infer(
                    torch.cat([call.waveforms for call in calls]), streams=merged_streams(calls)
                )
        except BaseException as error:  # each caller handles it (fallback) for its windows
            for call in calls:
                call.result.set_exception(error)
            return
        done = 0
        for call in calls:
            call.result.set_result(results[done : done + len(call.waveforms)])
            done += len(call.waveforms)
