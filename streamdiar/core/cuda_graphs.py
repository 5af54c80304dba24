"""A model's forward pass replayed from CUDA graphs, one per input shape.

On a GPU, the models of one live window are hundreds of small kernels (CAM++ alone has about
600), and launching them one by one from Python costs more than running them: on an H200, a
live step took 48 ms eagerly and 14 ms replayed, an hour's file 6.8 s and 4.1 s (README, "On
an NVIDIA GPU"). A CUDA graph records the kernels of one call and launches them all at once
on the next ones, for inputs of the same shape, which live windows (one shape) and a file's
batches (one shape but the last) are.

A shape is captured the second time it is seen, so that a shape seen once (a file's last
batch) costs no capture; at most `MAX_GRAPHS` shapes are kept per model, further ones run
eagerly. A capture that fails leaves the model eager, with one warning.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

MAX_GRAPHS = 8
WARM_UP_CALLS = 2  # before a capture, on a side stream: lazy initialisation stays out of it
Shape = tuple[tuple[int, ...], torch.dtype]


@dataclass(frozen=True)
class Replay:
    """One captured call: replaying `graph` computes `output` from whatever `input` holds."""

    graph: torch.cuda.CUDAGraph
    input: torch.Tensor
    output: torch.Tensor

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        self.input.copy_(inputs)
        self.graph.replay()
        return self.output.clone()  # the next replay overwrites `output`


class CudaGraphed:
    """`function` (a tensor on a CUDA device to a tensor) replayed from CUDA graphs, one per
    input shape seen twice; other inputs run it eagerly. Calls from several threads take
    turns: a graph's input and output are one buffer each."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], name: str) -> None:
        self.function = function
        self.name = name
        self._replays: dict[Shape, Replay] = {}
        self._seen: set[Shape] = set()
        self._failed = False
        self._lock = threading.Lock()

    @property
    def shapes(self) -> list[Shape]:
        """The input shapes captured so far."""
        return list(self._replays)

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        shape = (tuple(inputs.shape), inputs.dtype)
        with self._lock:
            replay = self._replays.get(shape)
            if replay is None and not self._failed and len(self._replays) < MAX_GRAPHS:
                if shape in self._seen:
                    replay = self._capture_or_fail(inputs)
                    if replay is not None:
                        self._replays[shape] = replay
                elif len(self._seen) < 4 * MAX_GRAPHS:
                    self._seen.add(shape)
            if replay is not None:
                return replay(inputs)
        return self.function(inputs)

    def _capture_or_fail(self, inputs: torch.Tensor) -> Replay | None:
        try:
            return self.capture(inputs)
        except RuntimeError as error:
            self._failed = True
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            warnings.warn(
                f"CUDA graphs cannot run {self.name} ({reason}); it runs eagerly", stacklevel=3
            )
            return None

    def capture(self, inputs: torch.Tensor) -> Replay:
        """A graph of one call of `function` on a copy of `inputs`. Raises RuntimeError
        where the function cannot be captured (it waits for the host, say)."""
        static_input = inputs.clone()
        side = torch.cuda.Stream(inputs.device)
        side.wait_stream(torch.cuda.current_stream(inputs.device))
        with torch.cuda.stream(side):
            for _ in range(WARM_UP_CALLS):
                self.function(static_input)
        torch.cuda.current_stream(inputs.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # other threads may use the device meanwhile (other streams' copies): only this
        # thread's calls must be capturable
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_output = self.function(static_input)
        return Replay(graph, static_input, static_output)
