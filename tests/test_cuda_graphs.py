"""On CUDA the models replay CUDA graphs (`cuda_graphs`): which calls are captured, and, where
a GPU is at hand, that the replays give what eager calls give."""

import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from streamdiar.core import cuda_graphs
from streamdiar.core.cuda_graphs import CudaGraphed

STEP = 8_000  # samples, 0.5 s
LIVE_WINDOW = 128_000  # samples, 8 s


class Recorded:
    """A stand-in for `CudaGraphed.capture` on CPU: a "replay" that calls the function and
    counts, and the captures made."""

    def __init__(self, fail: bool = False) -> None:
        self.captured: list[tuple[int, ...]] = []
        self.replays = 0
        self.fail = fail

    def capture(self, graphed: CudaGraphed, inputs: torch.Tensor):
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        self.captured.append(tuple(inputs.shape))

        def replay(later: torch.Tensor) -> torch.Tensor:
            self.replays += 1
            return graphed.function(later)

        return replay


@pytest.fixture
def recorded(monkeypatch) -> Recorded:
    recorded = Recorded()
    monkeypatch.setattr(CudaGraphed, "capture", lambda self, inputs: recorded.capture(self, inputs))
    return recorded


def test_a_shape_is_captured_when_seen_twice_then_replayed(recorded) -> None:
    graphed = CudaGraphed(lambda x: 2 * x, "double")
    window, last_batch = torch.ones(1, 1, 8), torch.ones(3, 1, 8)
    for _ in range(4):
        assert torch.equal(graphed(window), 2 * window)
    assert torch.equal(graphed(last_batch), 2 * last_batch)
    assert recorded.captured == [(1, 1, 8)]  # the shape seen once runs eagerly
    assert recorded.replays == 3  # the capture's own call, then two more
    assert [shape for shape, _ in graphed.shapes] == [(1, 1, 8)]


def test_shapes_past_the_limit_run_eagerly(recorded) -> None:
    graphed = CudaGraphed(lambda x: x + 1, "plus one")
    for length in range(1, cuda_graphs.MAX_GRAPHS + 4):
        for _ in range(3):
            graphed(torch.zeros(length))
    assert len(recorded.captured) == cuda_graphs.MAX_GRAPHS


def test_a_failed_capture_warns_once_and_leaves_the_function_eager(monkeypatch) -> None:
    recorded = Recorded(fail=True)
    monkeypatch.setattr(CudaGraphed, "capture", lambda self, inputs: recorded.capture(self, inputs))
    graphed = CudaGraphed(lambda x: x - 1, "minus one")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [graphed(torch.ones(2)) for _ in range(5)] + [graphed(torch.ones(3)) for _ in range(3)]
    assert all(torch.equal(result, torch.zeros_like(result)) for result in results)
    assert [str(warning.message) for warning in caught] == [
        "CUDA graphs cannot run minus one (operation not permitted when stream is capturing); "
        "it runs eagerly"
    ]
    assert graphed.shapes == []


def test_models_on_cpu_are_not_wrapped(campplus_backend) -> None:
    backend = campplus_backend("torch")
    assert backend.segmentation_runner(shared=False) is backend.segmentation
    assert not isinstance(backend.frames_runner(shared=True), CudaGraphed)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@cuda
@pytest.mark.parametrize("precision", ["float16", "float32"])
def test_replays_give_the_eager_results_on_cuda(shared_data, speaker_cosines, precision) -> None:
    """Live windows one at a time and a file's batches, on graphs and eagerly: the activity
    of all but a few frames the same, the vectors within the bound float16 keeps from
    float32 (tests/test_precision.py): a capture may pick other kernels than an eager call,
    which round differently, the more so in float16."""
    from streamdiar.core.campplus_backend import CampplusBackend

    audio, _ = sf.read(shared_data / "dev" / "dev00.wav", dtype="float32")
    live = [torch.from_numpy(audio[i * STEP : i * STEP + LIVE_WINDOW])[None] for i in range(40, 46)]
    file_windows = torch.stack(
        [torch.from_numpy(audio[i * STEP : i * STEP + 160_000]) for i in range(0, 90, 3)]
    )
    results = {}
    for graphs in (True, False):
        backend = CampplusBackend.packaged()
        backend.precision, backend.cuda_graphs = precision, graphs
        backend.to(torch.device("cuda"))
        live_results = [backend.infer(window)[0] for window in live]
        file_results = [backend.infer(file_windows, 3 * STEP) for _ in range(3)][-1]
        results[graphs] = (live_results, file_results)
        assert bool(backend.cuda_graph_shapes) == graphs
        if graphs:
            shapes = backend.cuda_graph_shapes
            assert ((1, 1, LIVE_WINDOW), torch.float32) in shapes["segmentation"]
            assert ((len(file_windows), 1, 160_000), torch.float32) in shapes["segmentation"]
            assert len(shapes["frames"]) >= 2  # a live window, a file's stretch
    for on_graphs, eager in zip(results[True], results[False]):
        same = [np.mean(a.activity == b.activity) for a, b in zip(on_graphs, eager, strict=True)]
        assert min(same) >= 0.999
        cosines = speaker_cosines(on_graphs, eager)
        assert len(cosines) >= len(eager) // 2 and cosines.min() >= 1 - 1e-4
