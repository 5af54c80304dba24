"""ONNX Runtime and OpenVINO for the default backend on CPU: the same results as torch within
float rounding, an export cache that survives damage and unwritable folders, calls from several
threads at once, and the runtime chosen by name."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from streamdiar.core.campplus_backend import CampplusBackend
from streamdiar.core.onnx_runtime import SPINNING, OnnxModule, cache_dir, weights_digest
from streamdiar.core.openvino_runtime import OpenVinoModule
from streamdiar.core.runtimes import RUNTIMES

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMDIAR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Scaled(nn.Module):
    """A module small enough to export in milliseconds."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        nn.init.constant_(self.linear.weight, scale)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear(inputs).relu()


@pytest.fixture(params=[OnnxModule, OpenVinoModule], ids=["onnxruntime", "openvino"])
def runtime(request) -> type[OnnxModule]:
    return request.param


def export(module: nn.Module, runtime: type[OnnxModule] = OnnxModule) -> OnnxModule:
    return runtime.export(module.eval(), torch.randn(2, 5, 4), {0: "batch", 1: "time"}, 1)


def test_export_takes_any_batch_and_length_and_is_cached(private_cache, runtime):
    module = Scaled(0.5)
    onnx_module = export(module, runtime)
    inputs = torch.randn(3, 11, 4)  # other batch and length than the export's example
    torch.testing.assert_close(onnx_module(inputs), module(inputs).detach())
    (cached,) = (private_cache / "onnx").iterdir()
    assert weights_digest(module) in cached.name
    modified = cached.stat().st_mtime_ns
    export(module, runtime)
    assert cached.stat().st_mtime_ns == modified  # loaded, not exported again
    export(Scaled(0.25), runtime)  # other weights, another file
    assert len(list((private_cache / "onnx").iterdir())) == 2


def test_onnx_runtime_threads_sleep_when_idle():
    """Idle threads leave the cores to torch, the other model and a transcriber."""
    options = export(Scaled(0.5)).session.get_session_options()
    assert options.get_session_config_entry(SPINNING) == "0"


def test_runtimes_share_the_cached_export(private_cache):
    module = Scaled(0.5)
    export(module, OnnxModule)
    (cached,) = (private_cache / "onnx").iterdir()
    modified = cached.stat().st_mtime_ns
    inputs = torch.randn(2, 9, 4)
    torch.testing.assert_close(export(module, OpenVinoModule)(inputs), module(inputs).detach())
    assert cached.stat().st_mtime_ns == modified


@pytest.mark.parametrize("damage", [b"", b"not a model", None], ids=["empty", "garbage", "other"])
def test_damaged_cache_is_replaced(private_cache, runtime, damage):
    module = Scaled(0.5)
    export(module, runtime)
    (cached,) = (private_cache / "onnx").iterdir()
    # None: a valid model of other weights under this one's name, which the check must catch
    export(Scaled(0.75), runtime)
    other = next(path for path in (private_cache / "onnx").iterdir() if path != cached)
    cached.write_bytes(other.read_bytes() if damage is None else damage)
    inputs = torch.randn(1, 7, 4)
    torch.testing.assert_close(export(module, runtime)(inputs), module(inputs).detach())
    assert cached.read_bytes() != (other.read_bytes() if damage is None else damage)


def test_unwritable_cache_still_runs(private_cache, runtime):
    private_cache.write_text("a file where the folder should be")
    module = Scaled(0.5)
    inputs = torch.randn(1, 3, 4)
    torch.testing.assert_close(export(module, runtime)(inputs), module(inputs).detach())


def test_calls_from_several_threads_at_once(runtime):
    """As the server's streams make them: each call gets its own answer."""
    module = Scaled(0.5)
    compiled = export(module, runtime)
    inputs = [torch.randn(1 + i % 3, 5 + i, 4) for i in range(32)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(compiled, inputs))
    for given, output in zip(inputs, outputs):
        torch.testing.assert_close(output, module(given).detach())


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("STREAMDIAR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "streamdiar"


@pytest.fixture(scope="module")
def backends() -> dict[str, CampplusBackend]:
    """The default backend on each runtime, by name."""
    backends = {}
    for name in RUNTIMES:
        backends[name] = CampplusBackend.packaged()
        backends[name].runtime = name
        backends[name].to(CPU)
    return backends


@pytest.mark.parametrize("name", [name for name in RUNTIMES if name != "torch"])
@pytest.mark.parametrize("seconds", [8.0, 3.3])
def test_default_backend_on_a_runtime_equals_torch(backends, shared_data, name, seconds):
    """Windows of dev00.wav, where several people speak: the same activity and speakers, and
    vectors equal within float rounding, for the default window and a shorter one."""
    onnx, torch_backend = backends[name], backends["torch"]
    assert onnx.runtime == name and onnx.run_segmentation is not onnx.segmentation
    audio, _ = sf.read(shared_data / "dev" / "dev00.wav", dtype="float32", frames=16_000 * 60)
    size = round(seconds * 16_000)
    windows = torch.from_numpy(np.stack([audio[i * 40_000 : i * 40_000 + size] for i in range(8)]))
    for mine, expected in zip(onnx.infer(windows), torch_backend.infer(windows)):
        np.testing.assert_array_equal(mine.activity, expected.activity)
        np.testing.assert_array_equal(mine.active, expected.active)
        np.testing.assert_allclose(mine.embeddings, expected.embeddings, atol=1e-4)


def test_unknown_runtime_is_one_line_and_exit_2(run_cli, tmp_path):
    audio = tmp_path / "silence.wav"
    sf.write(audio, np.zeros(16_000, np.float32), 16_000)
    result = run_cli("diarize", audio, extra_env={"STREAMDIAR_RUNTIME": "tensorrt"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "streamdiar: error: STREAMDIAR_RUNTIME must be one of onnx, openvino, torch, got "
        "'tensorrt'"
    )
