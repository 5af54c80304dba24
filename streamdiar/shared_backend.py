"""One backend's models serving several streams at once, from any threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from streamdiar.core.backend import Backend
from streamdiar.core.types import LocalSpeakers


class SharedBackend:
    """A backend whose models compute in one thread of their own, one call at a time, whatever
    stream or thread asks.

    The models are loaded once and not copied per stream; each stream keeps its own speakers
    (its own stitcher), and its windows give the results they would give alone. One thread, not
    only one call at a time: each thread that allocates gets its own malloc arena, so the
    models' large buffers allocated from every pushing thread would keep growing the memory
    held; and torch's ops called from a program's main thread ran up to 30 times slower than
    from another thread on a busy 2-core CPU. Everything but `infer` and `to` is the wrapped
    backend's own.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
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
        self, waveforms: torch.Tensor, step_samples: int | None = None
    ) -> list[LocalSpeakers]:
        return self._worker.submit(self._backend.infer, waveforms, step_samples).result()
