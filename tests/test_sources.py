import asyncio
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdiar.core.types import SAMPLE_RATE
from streamdiar.stream import sources
from streamdiar.stream.sources import AudioError, array_blocks, file_blocks, probe

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed",
)


def sine(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def read_all(path: Path, block_seconds: float = 0.5) -> tuple[np.ndarray, list[np.ndarray]]:
    async def collect() -> list[np.ndarray]:
        return [block async for block in file_blocks(path, block_seconds)]

    blocks = asyncio.run(collect())
    for block in blocks:
        assert block.dtype == np.float32 and block.ndim == 1
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return audio, blocks


def peak_frequency(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / len(audio)


def ffmpeg_sine(path: Path, seconds: float, rate: int = 44_100) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}:sample_rate={rate}", "-ac", "1", str(path)],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def mp3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    return ffmpeg_sine(tmp_path_factory.mktemp("mp3") / "sine.mp3", 2.0)


def test_16k_mono_wav_passes_through_unchanged(tmp_path):
    audio = np.random.default_rng(0).uniform(-1, 1, 40_000).astype(np.float32)
    path = tmp_path / "a.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    out, blocks = read_all(path, block_seconds=0.5)
    np.testing.assert_array_equal(out, audio)
    assert [len(b) for b in blocks] == [8000] * 5


@pytest.mark.parametrize(("rate", "channels"), [(44_100, 2), (8_000, 1)])
def test_other_rates_are_resampled_to_16k(tmp_path, rate, channels):
    tone = sine(2.0, rate)
    path = tmp_path / "a.wav"
    sf.write(path, np.stack([tone] * channels, axis=1), rate, subtype="PCM_16")
    out, blocks = read_all(path)
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 4
    assert abs(peak_frequency(out) - 440) < 2
    assert all(len(b) <= 0.6 * SAMPLE_RATE for b in blocks)
    # away from the edges, the resampled tone keeps its level
    assert np.max(np.abs(out[1000:-1000])) == pytest.approx(0.5, abs=0.01)


def test_stereo_is_averaged_to_mono(tmp_path):
    rng = np.random.default_rng(1)
    left, right = rng.uniform(-1, 1, (2, 10_000)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    out, _ = read_all(path)
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-7)


def test_flac_decodes_losslessly(tmp_path):
    tone = sine(1.5, SAMPLE_RATE)
    path = tmp_path / "a.flac"
    sf.write(path, tone, SAMPLE_RATE, subtype="PCM_16")
    out, _ = read_all(path)
    np.testing.assert_allclose(out, tone, atol=2 / 2**15)


def test_ogg_vorbis_keeps_length_and_pitch(tmp_path):
    path = tmp_path / "a.ogg"
    sf.write(path, sine(2.0, 48_000), 48_000, format="OGG", subtype="VORBIS")
    out, _ = read_all(path)
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 4
    assert abs(peak_frequency(out) - 440) < 2


@pytest.mark.parametrize(("subtype", "atol"), [("PCM_24", 1e-6), ("PCM_U8", 1 / 2**6)])
def test_24_and_8_bit_pcm(tmp_path, subtype, atol):
    tone = sine(1.0, SAMPLE_RATE)
    path = tmp_path / "a.wav"
    sf.write(path, tone, SAMPLE_RATE, subtype=subtype)
    out, _ = read_all(path)
    assert len(out) == len(tone)
    np.testing.assert_allclose(out, tone, atol=atol)


@needs_ffmpeg
def test_mp3_is_decoded_by_ffmpeg(mp3):
    out, blocks = read_all(mp3)
    assert abs(len(out) / SAMPLE_RATE - 2.0) < 0.1
    assert abs(peak_frequency(out) - 440) < 2
    assert [len(b) for b in blocks[:-1]] == [SAMPLE_RATE // 2] * (len(blocks) - 1)


def test_truncated_wav_yields_what_is_there(tmp_path):
    audio = np.random.default_rng(2).uniform(-1, 1, SAMPLE_RATE).astype(np.float32)
    path = tmp_path / "cut.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 1])  # the header still claims 1 s, mid-sample cut
    out, _ = read_all(path)
    assert 0.45 * SAMPLE_RATE < len(out) < 0.55 * SAMPLE_RATE
    np.testing.assert_allclose(out, audio[: len(out)], atol=1 / 2**15)


def test_nan_samples_become_zero_with_one_warning(tmp_path):
    audio = sine(1.0, SAMPLE_RATE)
    audio[[10, 500, 501]] = np.nan
    audio[900] = np.inf
    path = tmp_path / "nan.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="FLOAT")
    with pytest.warns(UserWarning, match="replaced 4 NaN/Inf samples") as caught:
        out, _ = read_all(path)
    assert len(caught) == 1
    assert np.isfinite(out).all()
    assert out[[10, 500, 501, 900]].tolist() == [0, 0, 0, 0]
    np.testing.assert_array_equal(out[:10], audio[:10])


@needs_ffmpeg
def test_closing_early_leaves_no_ffmpeg_process(tmp_path, monkeypatch):
    path = ffmpeg_sine(tmp_path / "long.mp3", 20.0)  # far more than the pipe buffers hold
    processes = []
    spawn = asyncio.create_subprocess_exec

    async def recording_spawn(*args, **kwargs):
        process = await spawn(*args, **kwargs)
        processes.append(process)
        return process

    monkeypatch.setattr(sources.asyncio, "create_subprocess_exec", recording_spawn)

    async def first_block_then_close() -> None:
        blocks = file_blocks(path)
        await anext(blocks)
        assert processes[0].returncode is None  # ffmpeg is still running
        await blocks.aclose()
        assert processes[0].returncode is not None

    asyncio.run(first_block_then_close())
    assert len(processes) == 1


@needs_ffmpeg
def test_corrupt_mp3_keeps_decoded_audio_with_a_warning(mp3, tmp_path):
    data = bytearray(mp3.read_bytes())
    rng = np.random.default_rng(3)
    for start in range(3000, len(data), 1500):
        data[start : start + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    path = tmp_path / "bad.mp3"
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="ffmpeg reported errors") as caught:
        out, _ = read_all(path)
    assert len(out) > 0
    assert all("\n" not in str(w.message) for w in caught)


def hide_ffmpeg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@needs_ffmpeg
def test_missing_ffmpeg_is_reported(tmp_path, monkeypatch):
    m4a = ffmpeg_sine(tmp_path / "a.m4a", 0.5)
    hide_ffmpeg(tmp_path, monkeypatch)
    for attempt in (lambda: read_all(m4a), lambda: probe(m4a)):
        with pytest.raises(AudioError, match="ffmpeg is not installed") as error:
            attempt()
        assert str(error.value) == f"cannot decode {m4a}: ffmpeg is not installed"


@needs_ffmpeg
@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile without MP3")
def test_mp3_falls_back_to_libsndfile_without_ffmpeg(mp3, tmp_path, monkeypatch):
    hide_ffmpeg(tmp_path, monkeypatch)
    out, _ = read_all(mp3)
    assert abs(len(out) / SAMPLE_RATE - 2.0) < 0.1
    assert probe(mp3).codec == "MP3 MPEG_LAYER_III"


def test_probe_reads_libsndfile_formats(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, np.zeros((22_050, 2), np.float32), 44_100, subtype="PCM_24")
    info = probe(path)
    assert (info.path, info.sample_rate, info.channels) == (path, 44_100, 2)
    assert info.duration == pytest.approx(0.5)
    assert info.codec == "FLAC PCM_24"


@needs_ffmpeg
def test_probe_reads_mp3_with_ffprobe(mp3):
    info = probe(mp3)
    assert info.codec == "mp3"
    assert info.channels == 1 and info.sample_rate == 44_100
    assert info.duration == pytest.approx(2.0, abs=0.1)


def _text_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.touch()
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: tmp / "missing.wav", "no such file"),
        (lambda tmp: tmp, "directory"),
        (_empty, "empty"),
        pytest.param(_text_wav, "cannot decode", marks=needs_ffmpeg),
    ],
    ids=["missing", "directory", "empty", "text-file"],
)
def test_bad_inputs_raise_one_line_errors(tmp_path, make, reason):
    path = make(tmp_path)
    for attempt in (lambda: probe(path), lambda: read_all(path)):
        with pytest.raises(AudioError, match=reason) as error:
            attempt()
        message = str(error.value)
        assert str(path) in message
        assert "\n" not in message


@settings(max_examples=50, deadline=None)
@given(length=st.integers(0, 2000), block_size=st.integers(1, 700))
def test_array_blocks_concatenate_to_the_input(length, block_size):
    samples = np.arange(length, dtype=np.float32)

    async def collect() -> list[np.ndarray]:
        return [block async for block in array_blocks(samples, block_size)]

    blocks = asyncio.run(collect())
    joined = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    np.testing.assert_array_equal(joined, samples)
    assert all(len(b) == block_size for b in blocks[:-1])
    assert all(0 < len(b) <= block_size for b in blocks)


def test_array_blocks_yields_to_the_event_loop():
    async def run() -> list[str]:
        events: list[str] = []

        async def other() -> None:
            for _ in range(3):
                events.append("other")
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        async for _ in array_blocks(np.zeros(30, np.float32), 10):
            events.append("block")
        await task
        return events

    events = asyncio.run(run())
    at_blocks = [i for i, event in enumerate(events) if event == "block"]
    assert len(at_blocks) == 3
    assert "other" in events[at_blocks[0] : at_blocks[-1]]
