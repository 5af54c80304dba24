"""The pyannote backend against pyannote.audio's own inference, with random weights; where its
models come from, and the one-line errors when they cannot be had."""

import os
import warnings
from pathlib import Path

import lightning
import numpy as np
import pytest
import soundfile
import torch

os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

from pyannote.audio import Inference, Model  # noqa: E402
from pyannote.audio.core.task import Problem, Resolution, Specifications  # noqa: E402
from pyannote.audio.models.embedding import WeSpeakerResNet34  # noqa: E402

from streamdiar.core.pyannote_backend import PyannoteBackend  # noqa: E402
from streamdiar.core.pyannote_models import (  # noqa: E402
    ModelSource,
    ModelSourceError,
    load_models,
    packaged_segmentation,
    random_embedding,
    random_segmentation,
)
from streamdiar.core.types import SAMPLE_RATE  # noqa: E402
from streamdiar.stream.windows import Windower  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1"}  # no test may wait on the network


@pytest.fixture(scope="module")
def backend() -> PyannoteBackend:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the random-weights warning
        return PyannoteBackend(random_segmentation(), random_embedding(), random_weights=True)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """(samples,) 6 s of noise shaped like speech: bursts of harmonics at changing pitch."""
    rng = np.random.default_rng(0)
    t = np.arange(6 * SAMPLE_RATE) / SAMPLE_RATE
    pitch = 120 + 80 * np.sin(2 * np.pi * 0.3 * t)
    voice = sum(np.sin(2 * np.pi * h * np.cumsum(pitch) / SAMPLE_RATE) / h for h in range(1, 6))
    envelope = (np.sin(2 * np.pi * 0.7 * t) > -0.3).astype(float)
    return (0.1 * voice * envelope + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def test_segmentation_matches_pyannote_inference(
    backend: PyannoteBackend, speech: np.ndarray
) -> None:
    inference = Inference(
        backend.segmentation,
        duration=backend.window_duration,
        step=backend.window_step,
        skip_aggregation=True,
    )
    expected = inference({"waveform": torch.from_numpy(speech)[None], "sample_rate": SAMPLE_RATE})
    windows = Windower(backend.window_duration, backend.window_step).push(speech)  # full ones
    results = backend.infer(torch.from_numpy(np.stack([w.samples for w in windows])))

    assert len(windows) == 3
    for window, local in zip(windows, results):
        chunk = round(window.start / backend.window_step)
        assert local.activity.shape == expected.data[chunk].shape == (293, 3)
        assert np.abs(local.activity - expected.data[chunk]).max() <= 1e-5
        assert list(local.active) == list(local.activity.max(axis=0) > 0)
        assert local.frame_step == pytest.approx(backend.segmentation.receptive_field.step)


def test_one_pass_embeddings_match_one_pass_per_speaker(
    backend: PyannoteBackend, speech: np.ndarray
) -> None:
    """The ResNet trunk once per window, pooled per speaker, equals pyannote.audio's
    WeSpeakerResNet34(waveforms, weights) run once per speaker."""
    num_samples = 2 * SAMPLE_RATE
    waveforms = torch.from_numpy(np.stack([speech[:num_samples], speech[-num_samples:]]))[:, None]
    frames = backend.segmentation.num_frames(num_samples)
    activity = torch.zeros(2, frames, 3)  # (batch, frames, K)
    activity[0, : frames // 2, 0] = 1  # window 0: speakers 0 and 1 overlap in the middle
    activity[0, frames // 3 :, 1] = 1
    activity[1, :, 2] = 1  # window 1: speaker 2 alone, speakers 0 and 1 silent

    embeddings, active = backend.speaker_embeddings(waveforms, activity)
    weights = backend.overlap_aware_weights(activity, num_samples)  # (batch, K, frames)

    assert active.tolist() == [[True, True, False], [False, False, True]]
    with torch.inference_mode():
        for window, speaker in zip(*np.nonzero(active.numpy())):
            reference = backend.embedding(
                waveforms[window : window + 1], weights[window : window + 1, speaker]
            )[0]
            cosine = torch.cosine_similarity(embeddings[window, speaker], reference, dim=0)
            assert cosine >= 0.9999
    assert not embeddings[~active].any()


def test_weights_exclude_overlap_unless_too_little_is_left() -> None:
    activity = torch.zeros(1, 100, 3)
    activity[0, :60, 0] = 1
    activity[0, 50:, 1] = 1  # 10 frames of overlap with speaker 0
    activity[0, 55:60, 2] = 1  # only ever in overlap

    weights = PyannoteBackend.overlap_aware_weights(activity, num_samples=100 * 270)

    assert weights[0, 0].tolist() == [1.0] * 50 + [0.0] * 50
    assert weights[0, 1].tolist() == [0.0] * 60 + [1.0] * 40
    assert weights[0, 2].tolist() == activity[0, :, 2].tolist()  # all of it: nothing is clean


def test_windows_without_speech_skip_the_embedding_model(
    backend: PyannoteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(waveforms: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the ResNet ran on a window without speech")

    monkeypatch.setattr(backend.embedding, "forward_frames", forbidden)
    activity = torch.zeros(2, 293, 3)
    embeddings, active = backend.speaker_embeddings(torch.zeros(2, 1, 5 * SAMPLE_RATE), activity)
    assert embeddings.shape == (2, 3, 256)
    assert not active.any() and not embeddings.any()


def test_no_token_and_no_checkpoints_says_what_to_provide(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(ModelSourceError, match="give --embedding PATH"):
        load_models(ModelSource())


@pytest.mark.parametrize(
    "source, message",
    [
        (ModelSource(embedding=Path("nope.bin")), "embedding checkpoint nope.bin is not a file"),
        (ModelSource(random_weights=True, embedding=Path("x")), "either --random-weights"),
        (ModelSource(segmentation=Path("nope.bin"), embedding=Path("nope.bin")), "is not a file"),
    ],
)
def test_incomplete_sources_are_refused(source: ModelSource, message: str) -> None:
    with pytest.raises(ModelSourceError, match=message):
        load_models(source)


def test_cli_bogus_token_one_line_exit_2(run_cli, tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    soundfile.write(audio, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    result = run_cli(
        "diarize", audio, "--backend", "pyannote", "--hf-token", "hf_bogus", extra_env=OFFLINE
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "streamdiar: error: cannot download pyannote/wespeaker-voxceleb-resnet34-LM"
    )
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_invalid_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pytorch_model.bin"
    checkpoint.write_text("not a checkpoint")
    with pytest.raises(ModelSourceError, match="is not a pyannote.audio model") as error:
        load_models(ModelSource(segmentation=checkpoint, embedding=checkpoint))
    assert len(str(error.value).splitlines()) == 1


def save_checkpoint(model: Model, path: Path) -> Path:
    """`model` saved as pyannote.audio saves a trained one (a Lightning checkpoint with the
    model's class, hyper-parameters and specifications)."""
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The random-weights models (the same seeded weights as --random-weights) as checkpoint
    files: segmentation, embedding."""
    folder = tmp_path_factory.mktemp("checkpoints")
    segmentation, embedding = load_models(ModelSource(random_weights=True))
    embedding.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=1.0
    )  # a checkpoint records them; the untrained encoder is built without any
    return (
        save_checkpoint(segmentation, folder / "segmentation.bin"),
        save_checkpoint(embedding, folder / "embedding.bin"),
    )


def test_local_checkpoints_load_the_models_they_hold(checkpoints: tuple[Path, Path]) -> None:
    loaded = load_models(ModelSource(segmentation=checkpoints[0], embedding=checkpoints[1]))
    for model, expected in zip(loaded, load_models(ModelSource(random_weights=True))):
        assert type(model) is type(expected) and not model.training
        for (name, value), reference in zip(
            model.state_dict().items(), expected.state_dict().values()
        ):
            assert torch.equal(value, reference), name


def test_without_a_segmentation_checkpoint_the_packaged_one_is_used(
    checkpoints: tuple[Path, Path],
) -> None:
    segmentation, embedding = load_models(ModelSource(embedding=checkpoints[1]))
    packaged = packaged_segmentation()
    for name, weights in packaged.state_dict().items():
        assert torch.equal(segmentation.state_dict()[name], weights), name
    assert isinstance(embedding, WeSpeakerResNet34)


def test_checkpoints_swapped_are_refused(checkpoints: tuple[Path, Path]) -> None:
    with pytest.raises(ModelSourceError, match="is not a powerset segmentation model"):
        load_models(ModelSource(segmentation=checkpoints[1], embedding=checkpoints[0]))


def excerpt(shared_data: Path, folder: Path, start: int, seconds: int) -> Path:
    """`seconds` of sample.wav from `start` (s), as call.wav in `folder`."""
    samples, rate = soundfile.read(shared_data / "dev" / "sample.wav", dtype="float32")
    audio = folder / "call.wav"
    soundfile.write(audio, samples[start * rate : (start + seconds) * rate], rate)
    return audio


def test_cli_diarizes_with_random_weights(run_cli, shared_data: Path, tmp_path: Path) -> None:
    audio = excerpt(shared_data, tmp_path, 0, 5)  # one window
    rttm = tmp_path / "out.rttm"

    result = run_cli(
        "diarize", audio, "--backend", "pyannote", "--random-weights", "--device", "cpu",
        "--rttm", rttm, "--progress", "none", extra_env=OFFLINE,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "random weights" in result.stderr
    assert "call.wav: 5.0 s of audio" in result.stderr
    # untrained models may hear no one: the turns, if any, must still be well formed
    for line in rttm.read_text().splitlines():
        fields = line.split()
        assert fields[0] == "SPEAKER" and fields[1] == "call"
        assert 0 <= float(fields[3]) and float(fields[3]) + float(fields[4]) <= 5.0 + 1e-3


def test_cli_diarizes_with_local_checkpoints_as_with_the_models_they_hold(
    run_cli, shared_data: Path, checkpoints: tuple[Path, Path], tmp_path: Path
) -> None:
    call = excerpt(shared_data, tmp_path, 6, 10)  # where the untrained models hear 2 turns
    outputs = []
    for name, source in [
        ("random", ["--random-weights"]),
        ("local", ["--segmentation", checkpoints[0], "--embedding", checkpoints[1]]),
    ]:
        rttm = tmp_path / f"{name}.rttm"
        result = run_cli(
            "diarize", call, "--backend", "pyannote", *source, "--device", "cpu",
            "--rttm", rttm, "--progress", "none", extra_env=OFFLINE,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        outputs.append(rttm.read_text())
    assert outputs[0] and outputs[0] == outputs[1]
