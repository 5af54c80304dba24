"""Which device a run asks for, and what it gets on a machine without an accelerator."""

import pytest
import torch

from streamdiar.core.device import DeviceError, requested_device, resolve_device


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, {}, "auto"),
        ("cpu", {"STREAMDIAR_DEVICE": "cuda"}, "cpu"),
        (None, {"STREAMDIAR_DEVICE": "MPS"}, "mps"),
        (None, {"USE_GPU_DIARIZATION": "1"}, "gpu"),
        (None, {"USE_GPU_DIARIZATION": "0"}, "auto"),
        (None, {"STREAMDIAR_DEVICE": "cpu", "USE_GPU_DIARIZATION": "1"}, "cpu"),
        ("cuda", {"USE_GPU_DIARIZATION": "1"}, "cuda"),
        ("gpu", {"STREAMDIAR_DEVICE": "cpu"}, "gpu"),
    ],
)
def test_the_flag_wins_then_the_environment(flag, env, expected):
    assert requested_device(flag, env) == expected


def test_an_unknown_device_is_refused_in_one_line():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        requested_device("tpu", {})


def test_missing_accelerators_fall_back_to_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == (torch.device("cpu"), None)
    for name in ("cuda", "mps", "gpu"):
        device, warning = resolve_device(name)
        assert device == torch.device("cpu")
        assert "CPU" in warning


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto")[0] == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("gpu") == (torch.device("mps"), None)


class _Placed:
    def __init__(self, name: str, device: str) -> None:
        self.name, self.device = name, torch.device(device)


@pytest.mark.parametrize(
    ("backend", "device", "expected"),
    [
        ("embedded", "cpu", 32),
        ("pyannote", "cpu", 16),
        ("embedded", "cuda", 128),
        ("pyannote", "cuda", 64),
        ("pyannote", "mps", 32),
    ],
)
def test_file_batch_size_is_chosen_for_backend_and_device(backend, device, expected) -> None:
    from streamdiar.session import build_diarizer, file_batch_size

    assert file_batch_size(_Placed(backend, device)) == expected
    if device == "cpu" and backend == "embedded":
        from streamdiar.core.embedded import EmbeddedBackend

        assert build_diarizer(EmbeddedBackend(), 2.0).batch_size == expected
