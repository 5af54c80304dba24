"""ONNX Runtime and OpenVINO for the default backend on CPU: the same results as torch within
float rounding (bfloat16 within its own bounds), an export cache and OpenVINO's cache of
compiled models that survive damage and unwritable folders, calls from several threads at
once, and the runtime chosen by name and mode."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from streamdiar.core.campplus_backend import CampplusBackend, ModelRuntimes, compiled_runtimes
from streamdiar.core.onnx_runtime import SPINNING, OnnxModule, cache_dir, weights_digest
from streamdiar.core.openvino_runtime import (
    OpenVinoBfloat16Module,
    OpenVinoInt8Module,
    OpenVinoModule,
    computes_bfloat16,
)
from streamdiar.core.runtimes import RUNTIMES

CPU = torch.device("cpu")
BFLOAT16 = computes_bfloat16()  # whether this CPU computes bfloat16 natively


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


@pytest.fixture(
    params=[OnnxModule, OpenVinoModule, OpenVinoBfloat16Module],
    ids=["onnxruntime", "openvino", "openvino-bfloat16"],
)
def runtime(request) -> type[OnnxModule]:
    return request.param


def assert_runs_like(outputs: torch.Tensor, expected: torch.Tensor, runtime: type[OnnxModule]):
    """Equal within float rounding, or within bfloat16's 8 bits of mantissa."""
    if runtime is OpenVinoBfloat16Module:
        torch.testing.assert_close(outputs, expected, rtol=2e-2, atol=2e-2)
    else:
        torch.testing.assert_close(outputs, expected)


def export(module: nn.Module, runtime: type[OnnxModule] = OnnxModule) -> OnnxModule:
    return runtime.export(module.eval(), torch.randn(2, 5, 4), {0: "batch", 1: "time"}, 1)


def test_export_takes_any_batch_and_length_and_is_cached(private_cache, runtime):
    module = Scaled(0.5)
    onnx_module = export(module, runtime)
    inputs = torch.randn(3, 11, 4)  # other batch and length than the export's example
    assert_runs_like(onnx_module(inputs), module(inputs).detach(), runtime)
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


@pytest.mark.parametrize("precision", [OpenVinoModule, OpenVinoBfloat16Module], ids=["f32", "bf16"])
def test_openvino_threads_are_not_pinned_to_cores(precision):
    """Two models beside each other (a live window's segmentation and CAM++) share the cores
    instead of taking turns on the first ones, where OpenVINO would pin both."""
    assert export(Scaled(0.5), precision).compiled.get_property("ENABLE_CPU_PINNING") is False


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
    assert_runs_like(export(module, runtime)(inputs), module(inputs).detach(), runtime)
    assert cached.read_bytes() != (other.read_bytes() if damage is None else damage)


def test_unwritable_cache_still_runs(private_cache, runtime):
    private_cache.write_text("a file where the folder should be")
    module = Scaled(0.5)
    inputs = torch.randn(1, 3, 4)
    assert_runs_like(export(module, runtime)(inputs), module(inputs).detach(), runtime)


@pytest.mark.parametrize("precision", [OpenVinoModule, OpenVinoBfloat16Module], ids=["f32", "bf16"])
def test_openvino_keeps_compiled_models_with_the_same_outputs(private_cache, precision):
    """A load from OpenVINO's cache computes exactly what a compile without one does, in its
    own precision (bfloat16 shares float32's entry); a damaged entry is compiled again."""
    module = Scaled(0.5)
    inputs = torch.randn(2, 9, 4)
    private_cache.write_text("a file where the folder should be")
    uncached = export(module, precision)
    private_cache.unlink()
    export(module, precision)
    cached = export(module, precision)
    assert cached.compiled.get_property("LOADED_FROM_CACHE")
    computes = "bf16" if precision is OpenVinoBfloat16Module and BFLOAT16 else "f32"
    for loaded in (cached, uncached):
        assert loaded.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == computes
    assert torch.equal(cached(inputs), uncached(inputs))
    for entry in (private_cache / "openvino").iterdir():
        entry.chmod(0o600)  # OpenVINO writes its entries read-only
        entry.write_bytes(b"not a compiled model")
    assert torch.equal(export(module, precision)(inputs), uncached(inputs))


def test_calls_from_several_threads_at_once(runtime):
    """As the server's streams make them: each call gets its own answer."""
    module = Scaled(0.5)
    compiled = export(module, runtime)
    inputs = [torch.randn(1 + i % 3, 5 + i, 4) for i in range(32)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(compiled, inputs))
    for given, output in zip(inputs, outputs):
        assert_runs_like(output, module(given).detach(), runtime)


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


# auto runs in float32 only where the CPU has no bfloat16 units
FLOAT32 = ["onnx", "openvino"] + ([] if BFLOAT16 else ["auto"])


@pytest.mark.parametrize("name", FLOAT32)
@pytest.mark.parametrize("seconds", [8.0, 3.3])
def test_default_backend_on_a_runtime_equals_torch(backends, shared_data, name, seconds):
    """Windows of dev00.wav, where several people speak: the same activity and speakers, and
    vectors equal within float rounding, for the default window and a shorter one."""
    onnx, torch_backend = backends[name], backends["torch"]
    assert onnx.runtime == name and onnx.segmentation_runner(False) is not onnx.segmentation
    audio, _ = sf.read(shared_data / "dev" / "dev00.wav", dtype="float32", frames=16_000 * 60)
    size = round(seconds * 16_000)
    windows = torch.from_numpy(np.stack([audio[i * 40_000 : i * 40_000 + size] for i in range(8)]))
    for mine, expected in zip(onnx.infer(windows), torch_backend.infer(windows)):
        np.testing.assert_array_equal(mine.activity, expected.activity)
        np.testing.assert_array_equal(mine.active, expected.active)
        np.testing.assert_allclose(mine.embeddings, expected.embeddings, atol=1e-4)


ONNX = ModelRuntimes(OnnxModule, OnnxModule, OnnxModule)
OPENVINO = ModelRuntimes(OpenVinoModule, OpenVinoModule, OpenVinoModule)
OPENVINO_BF16 = OpenVinoBfloat16Module if BFLOAT16 else OpenVinoModule  # float32 without units
BF16 = ModelRuntimes(OPENVINO_BF16, OPENVINO_BF16, OPENVINO_BF16)
INT8_CAMPPLUS = ModelRuntimes(OpenVinoModule, OpenVinoInt8Module, OpenVinoInt8Module)
# auto's live windows: all in bfloat16 where the CPU computes it, else in float32 on ONNX
# Runtime but for CAM++'s body
AUTO_LIVE = BF16 if BFLOAT16 else ModelRuntimes(OnnxModule, OnnxModule, OpenVinoModule)


@pytest.mark.parametrize(
    "name, live, files",
    [
        ("auto", AUTO_LIVE, INT8_CAMPPLUS),
        ("onnx", ONNX, ONNX),
        ("openvino", OPENVINO, OPENVINO),
        ("openvino-bf16", BF16, BF16),
        ("torch", None, None),
    ],
)
def test_each_mode_runs_on_its_runtime(name, live, files):
    assert compiled_runtimes(name, shared=False) == live
    assert compiled_runtimes(name, shared=True) == files


def test_auto_compiles_a_files_models_at_its_first_batch(session_cache):
    """Live windows run at once on the models compiled at load; a file's first batch
    compiles its own (OpenVINO), used from then on."""
    backend = CampplusBackend.packaged()
    backend.runtime = "auto"
    backend.to(CPU)
    live, files = compiled_runtimes("auto", shared=False), compiled_runtimes("auto", shared=True)
    assert set(backend._compiled) == {(live, False)}
    assert type(backend.segmentation_runner(False)) is AUTO_LIVE.segmentation
    live_name = "OpenVINO bfloat16" if BFLOAT16 else "ONNX Runtime, CAM++'s body OpenVINO"
    assert backend.compiled_models(shared=False).runtime_name == live_name
    file_runner = backend.segmentation_runner(True)
    assert type(file_runner) is OpenVinoModule
    assert backend.segmentation_runner(True) is file_runner


def consecutive_windows(path, count: int) -> torch.Tensor:
    """The first `count` default windows (8 s every 0.5 s) of a file (count, samples)."""
    audio, _ = sf.read(path, dtype="float32")
    windows = [audio[i * 8_000 : i * 8_000 + 128_000] for i in range(count)]
    return torch.from_numpy(np.stack(windows))


@pytest.mark.parametrize("recording", ["dev00", "dev01"])
@pytest.mark.parametrize(
    "name, step_samples", [("openvino-bf16", 8_000), ("auto", None)], ids=["files", "live"]
)
def test_bfloat16_stays_close_to_float32(
    backends, shared_data, speaker_cosines, recording, name, step_samples
):
    """Windows in bfloat16 on a CPU with bfloat16 units, a file's (`openvino-bf16`) or live
    ones (`auto`: all its live models there), against float32 (ONNX Runtime): activity moves
    on at most 2 % of (frame, speaker) entries (0.6-1 % on the dev files), 95 % of windows
    keep their active speakers (all on the dev files, 97.8 % on sample.wav), and the vectors
    of their speakers keep a median cosine of 0.9996-0.9998 (bound 0.999; 5th percentile
    0.86-0.93, bound 0.8: a speaker heard for a few frames is pooled over other frames when
    one flips)."""
    if not BFLOAT16:
        pytest.skip("this CPU does not compute bfloat16 natively: OpenVINO runs float32")
    windows = consecutive_windows(shared_data / "dev" / f"{recording}.wav", 45)  # 30 s
    bfloat16 = backends[name].infer(windows, step_samples=step_samples)
    float32 = backends["onnx"].infer(windows, step_samples=step_samples)
    agreement = np.mean([np.mean(b.activity == f.activity) for b, f in zip(bfloat16, float32)])
    assert agreement >= 0.98
    assert np.mean([np.array_equal(b.active, f.active) for b, f in zip(bfloat16, float32)]) >= 0.95
    cosines = speaker_cosines(bfloat16, float32)
    assert np.median(cosines) >= 0.999
    assert np.percentile(cosines, 5) >= 0.8
