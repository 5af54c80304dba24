"""CAM++'s trunk in int8 for files (`int8`, OpenVINO): quantized once and cached, made again
when the cache is damaged, float32 with a warning where it cannot be made or kept, and the
vectors of the dev recordings' speakers close to float32's."""

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from streamdiar.core import int8
from streamdiar.core.campplus_backend import CampplusBackend
from streamdiar.core.openvino_runtime import OpenVinoInt8Module, OpenVinoModule

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMDIAR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def convolutions() -> nn.Module:
    """A stack of convolutions small enough to quantize in seconds."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(4, 16, 3), nn.ReLU(), nn.Conv1d(16, 4, 3)).eval()


def example() -> torch.Tensor:
    """Its calibration input (batch, channels, steps)."""
    return torch.randn(1, 4, 400, generator=torch.Generator().manual_seed(1))


def export(module: nn.Module) -> OpenVinoModule:
    return OpenVinoInt8Module.export(module, example(), {0: "batch", 2: "steps"}, 1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def test_quantized_once_then_loaded_from_the_cache(private_cache, monkeypatch):
    module = convolutions()
    quantized = export(module)
    assert type(quantized) is OpenVinoInt8Module
    (model,) = (private_cache / "int8").glob("*/model.xml")
    assert "FakeQuantize" in model.read_text()  # int8 layers, not a float32 copy
    inputs = torch.randn(2, 4, 250)  # other batch and length than the calibration's
    assert cosine(quantized(inputs), module(inputs).detach()) >= 0.999

    def no_worker(*args, **kwargs):
        raise AssertionError("quantized again")

    monkeypatch.setattr(int8.subprocess, "run", no_worker)
    assert type(export(module)) is OpenVinoInt8Module


def test_a_damaged_model_in_the_cache_is_made_again(private_cache):
    module = convolutions()
    export(module)
    (model,) = (private_cache / "int8").glob("*/model.xml")
    model.write_text("not a model")
    inputs = torch.randn(1, 4, 50)
    again = export(module)
    assert type(again) is OpenVinoInt8Module
    assert "FakeQuantize" in model.read_text()
    assert cosine(again(inputs), module(inputs).detach()) >= 0.999


def test_float32_with_a_warning_where_nncf_fails(monkeypatch):
    monkeypatch.setattr(int8, "WORKER", "streamdiar.core.no_such_module")
    module = convolutions()
    with pytest.warns(UserWarning, match=r"Sequential runs in float32: NNCF failed \(.*No module"):
        fallback = export(module)
    assert type(fallback) is OpenVinoModule
    inputs = torch.randn(1, 4, 50)
    torch.testing.assert_close(fallback(inputs), module(inputs).detach())


def test_float32_with_a_warning_where_the_cache_cannot_be_written(private_cache):
    private_cache.write_text("a file where the folder should be")
    module = convolutions()
    with pytest.warns(UserWarning, match="Sequential runs in float32: the cache cannot be written"):
        fallback = export(module)
    assert type(fallback) is OpenVinoModule


def test_files_quantize_campplus_alone(session_cache):
    backend = CampplusBackend.packaged()
    backend.runtime = "auto"
    compiled = backend.to(CPU).compiled_models(shared=True)
    assert (type(compiled.segmentation), type(compiled.head), type(compiled.body)) == (
        OpenVinoModule,
        OpenVinoInt8Module,
        OpenVinoInt8Module,
    )
    assert compiled.runtime_name == "OpenVINO, CAM++ OpenVINO int8"


def file_windows(path, count: int) -> torch.Tensor:
    """The first `count` file windows (10 s every 10/3 s) of a recording (count, samples)."""
    audio, _ = sf.read(path, dtype="float32")
    audio = np.tile(audio, 2)  # 60 s: 16 windows, one CAM++ pass, as in files
    windows = [audio[i * 53_333 : i * 53_333 + 160_000] for i in range(count)]
    return torch.from_numpy(np.stack(windows))


@pytest.fixture(scope="module")
def int8_and_float32(campplus_backend) -> tuple[CampplusBackend, CampplusBackend]:
    """The default backend as `auto` runs files (CAM++ in int8), and all in float32."""
    return campplus_backend("auto"), campplus_backend("openvino")


@pytest.mark.parametrize("recording", ["sample", "dev00", "dev01"])
def test_files_in_int8_stay_close_to_float32(
    session_cache, int8_and_float32, shared_data, same_segmentation_cosines, recording
):
    """A file's windows with CAM++'s trunk in int8 (`auto`) against float32 (`openvino`): the
    segmentation's results are the same, and the vectors of the windows' speakers keep a
    median cosine of 0.976-0.993 (bound 0.96; 5th percentile 0.972-0.990, bound 0.95;
    sample.wav is the calibration recording)."""
    windows = file_windows(shared_data / "dev" / f"{recording}.wav", 16)
    quantized, float32 = (
        backend.infer(windows, step_samples=53_333) for backend in int8_and_float32
    )
    cosines = same_segmentation_cosines(quantized, float32)
    assert np.median(cosines) >= 0.96
    assert np.percentile(cosines, 5) >= 0.95
