"""`streamdiar live` through a real PortAudio device: a private PulseAudio server whose null
sinks paplay plays the dev recordings into, recorded from their monitors by PortAudio through
ALSA's pulse plugin (the device "pulse"); and that server going away mid-capture."""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline
from scipy.signal import correlate

import streamdiar
from streamdiar.cli.live import run_live
from streamdiar.session import build_live_diarizer
from streamdiar.core.backend import Backend
from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.evaluation import diarization_error_rate, load_rttm, load_uem
from streamdiar.session import load_backend
from streamdiar.settings import BACKENDS
from streamdiar.stream.microphone import (
    AudioCallback,
    AudioInput,
    Capture,
    FinishedCallback,
    InputStream,
    Microphone,
    MicrophoneError,
    SimulatedMicrophone,
)

pytestmark = pytest.mark.realtime  # a sound server plays the recordings at real time

DEV_FILES = ("sample", "dev00", "dev01")
LATENCY = 2.0
# Null sinks at the pipeline's own format: PulseAudio passes the played samples through
# unchanged, so the device path can be held to the exact samples of the file.
EXACT_SINK = "rate=16000 channels=1 format=float32le"
# A new playback stream starts with a few milliseconds rendered as silence (about 100 samples
# here): played before each recording, so that the recording itself arrives whole.
LEAD_IN_SECONDS = 0.25
# How long the daemon outlives its last client: longer than any test leaves it without one
IDLE_EXIT_SECONDS = 120


class PulseServer:
    """A private PulseAudio daemon with null sinks: its socket, pid file and cookie live in
    `folder`, so it neither meets nor disturbs another server on the machine."""

    def __init__(self, folder: Path, sinks: dict[str, str]) -> None:
        self._sinks = sinks  # name -> module-null-sink arguments beside sink_name
        self.daemon_env = {
            **os.environ,
            "PULSE_RUNTIME_PATH": str(folder),
            "XDG_RUNTIME_DIR": str(folder),
            "HOME": str(folder),
        }
        # what its clients need: libpulse would otherwise write a cookie into the real home
        self.client_env = {
            "PULSE_RUNTIME_PATH": str(folder),
            "PULSE_COOKIE": str(folder / ".config" / "pulse" / "cookie"),
        }
        self._pid_file = folder / "pid"

    def start(self) -> None:
        loads = [
            f"--load=module-null-sink sink_name={name} {arguments}".strip()
            for name, arguments in self._sinks.items()
        ]
        started = self._pulseaudio(
            "-D",
            # not -1 (never): a daemon whose test process died goes once idle
            f"--exit-idle-time={IDLE_EXIT_SECONDS}",
            "-n",
            "--load=module-native-protocol-unix",
            *loads,
        )
        if started.returncode != 0:
            lines = started.stderr.strip().splitlines() or [f"exit code {started.returncode}"]
            pytest.skip(f"PulseAudio cannot run here: {lines[-1]}")

    def running(self) -> bool:
        return self._pulseaudio("--check").returncode == 0

    def stop(self) -> None:
        """Stops the daemon (`pulseaudio -k`, then SIGKILL) and waits until it is gone."""
        if not self.running():
            return
        pid = int(self._pid_file.read_text())
        self._pulseaudio("-k")
        deadline = time.monotonic() + 10
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            os.kill(pid, signal.SIGKILL)

    def _pulseaudio(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["pulseaudio", *args], env=self.daemon_env, capture_output=True, text=True, timeout=30
        )


def _rescan_devices() -> None:
    """PortAudio lists the devices it could open when initialized (sounddevice does so when
    imported): "pulse" exists only while a server answers."""
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()


@pytest.fixture
def pulse(tmp_path_factory, monkeypatch) -> Iterator[PulseServer]:
    """A private server with sinks vmic0..2 at 16 kHz mono float and vmic as PulseAudio makes
    it by default (44.1 kHz stereo 16-bit), and this process its client; skips where PulseAudio,
    paplay or ALSA's pulse plugin is missing or the daemon cannot run."""
    missing = [name for name in ("pulseaudio", "paplay") if shutil.which(name) is None]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed "
            "(apt-get install pulseaudio pulseaudio-utils libasound2-plugins)"
        )
    # a short folder: the socket's path must fit in 108 bytes
    folder = tmp_path_factory.mktemp("pulse")
    sinks = {f"vmic{index}": EXACT_SINK for index in range(len(DEV_FILES))} | {"vmic": ""}
    server = PulseServer(folder, sinks)
    server.start()
    try:
        for name, value in server.client_env.items():
            monkeypatch.setenv(name, value)
        _rescan_devices()
        try:
            Microphone("pulse")
        except MicrophoneError:
            pytest.skip("PortAudio lists no device 'pulse' (apt-get install libasound2-plugins)")
        yield server
    finally:
        server.stop()
        assert not server.running()
        monkeypatch.undo()
        _rescan_devices()


class SinkMonitor:
    """The PortAudio device "pulse", recording the monitor of one null sink."""

    def __init__(self, sink: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self._device = Microphone("pulse")
        self._sink = sink
        self._monkeypatch = monkeypatch
        self.name, self.samplerate = sink, self._device.samplerate
        self.channels = self._device.channels

    def open(self, callback: AudioCallback, finished: FinishedCallback) -> InputStream:
        # libpulse reads it when the stream connects, which is when PortAudio opens it
        self._monkeypatch.setenv("PULSE_SOURCE", f"{self._sink}.monitor")
        return self._device.open(callback, finished)


class RecordingCapture(Capture):
    """A Capture that keeps the audio it hands the diarizer. Its queue holds minutes, so that
    every block reaches the diarizer however busy the machine: three sessions at once on two
    busy cores dropped nothing with the default 5 s, but dropping is test_live's subject."""

    def __init__(self, source: AudioInput) -> None:
        super().__init__(source, max_queue_seconds=600.0)
        self._heard: list[np.ndarray] = []

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        async for block in super().blocks():
            self._heard.append(block)
            yield block

    def heard(self) -> np.ndarray:
        return np.concatenate(self._heard)


def _wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:g} s"
        time.sleep(0.1)


async def _until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        await asyncio.sleep(0.05)


async def _play(sink: str, path: Path) -> None:
    player = await asyncio.create_subprocess_exec(
        "paplay", "-d", sink, str(path), stderr=asyncio.subprocess.PIPE
    )
    _, errors = await player.communicate()
    assert player.returncode == 0, errors.decode()


async def _diarized(captures: list[RecordingCapture], backend: Backend) -> list[list[Turn]]:
    """The turns of live sessions on `captures`, run side by side."""
    turns: list[list[Turn]] = [[] for _ in captures]
    await asyncio.gather(
        *(
            run_live(capture, build_live_diarizer(backend, LATENCY), found.append)
            for capture, found in zip(captures, turns)
        )
    )
    return turns


async def _diarized_while_playing(
    captures: list[RecordingCapture], plays: list[tuple[str, Path]], backend: Backend
) -> list[list[Turn]]:
    """_diarized, playing each (sink, file) once every device delivers; capture stops half a
    second after the last play ends."""
    diarizing = asyncio.ensure_future(_diarized(captures, backend))
    try:
        await _until(
            lambda: all(capture.stats.captured_seconds > 0 for capture in captures),
            "every device delivers audio",
        )
        await asyncio.gather(*(_play(sink, path) for sink, path in plays))
        await asyncio.sleep(0.5)
    finally:
        for capture in captures:
            capture.stop()
    return await diarizing


def _lead_in(path: Path, folder: Path) -> Path:
    """A copy of the recording at `path` after LEAD_IN_SECONDS of silence."""
    samples, rate = sf.read(path, dtype="float32")
    played = folder / f"lead-in-{path.name}"
    silence = np.zeros(round(LEAD_IN_SECONDS * rate), np.float32)
    sf.write(played, np.concatenate([silence, samples]), rate, subtype="FLOAT")
    return played


def _annotation(turns: list[Turn], uri: str, shift: float) -> Annotation:
    """The turns as one file's hypothesis, `shift` seconds earlier."""
    annotation = Annotation(uri=uri)
    for turn in turns:
        annotation[Segment(turn.start - shift, turn.end - shift)] = turn.speaker
    return annotation


def _references(dev: Path) -> tuple[dict[str, Annotation], dict[str, Timeline]]:
    """As in test_dev_der: the dev files over their uem, sample.wav over all of it."""
    reference = {**load_rttm(dev / "sample.rttm"), **load_rttm(dev / "debug.development.rttm")}
    uem = load_uem(dev / "debug.development.uem")
    uem["sample"] = Timeline([Segment(0, sf.info(dev / "sample.wav").duration)], uri="sample")
    return reference, uem


def test_the_device_hands_the_diarizer_what_was_played_and_scores_as_simulate(
    shared_data, pulse, tmp_path, monkeypatch
):
    """The three dev recordings played into three devices at once, each diarized live by the
    default backend. The device path must deliver each file sample for sample (after the
    silence the device heard before it), and score as --simulate of that same sound.

    Not as --simulate of the bare file: the default backend's turns change with the offset of
    the audio (one sample more of silence before sample.wav: 3 speakers and 28 % DER instead of
    2 and 11 %), and how long a device listens before the sound starts is not ours to choose."""
    dev = shared_data / "dev"
    backend, _ = load_backend(BACKENDS[0], None)
    sinks = [f"vmic{index}" for index in range(len(DEV_FILES))]
    captures = [RecordingCapture(SinkMonitor(sink, monkeypatch)) for sink in sinks]
    plays = [
        (sink, _lead_in(dev / f"{name}.wav", tmp_path)) for sink, name in zip(sinks, DEV_FILES)
    ]
    device_turns = asyncio.run(_diarized_while_playing(captures, plays, backend))

    leads, replays = [], []
    for name, capture in zip(DEV_FILES, captures):
        assert (capture.source.samplerate, capture.source.channels) == (SAMPLE_RATE, 1)
        assert capture.stats.dropped_seconds == 0 and capture.stats.overflows == 0
        heard, played = capture.heard(), sf.read(dev / f"{name}.wav", dtype="float32")[0]
        lead = np.flatnonzero(heard)[0] - np.flatnonzero(played)[0]
        assert lead > 0 and not heard[:lead].any() and not heard[lead + len(played) :].any()
        assert np.array_equal(heard[lead : lead + len(played)], played), name
        replay = tmp_path / f"heard-{name}.wav"
        sf.write(replay, heard, SAMPLE_RATE, subtype="FLOAT")
        leads.append(lead / SAMPLE_RATE)
        replays.append(RecordingCapture(SimulatedMicrophone(replay, speed=100)))
    replay_turns = asyncio.run(_diarized(replays, backend))

    reference, uem = _references(dev)
    for name, lead, live, replayed in zip(DEV_FILES, leads, device_turns, replay_turns):
        scored = {
            how: (
                diarization_error_rate(
                    {name: reference[name]}, {name: _annotation(turns, name, lead)}, uem
                ).der,
                len({turn.speaker for turn in turns}),
            )
            for how, turns in (("device", live), ("--simulate", replayed))
        }
        results = (f"{how} {100 * der:.2f} % DER, {n} speakers" for how, (der, n) in scored.items())
        print(f"\n{name} after {lead:.3f} s of silence: {', '.join(results)}")
        (device, device_speakers), (simulate, simulate_speakers) = scored.values()
        assert device_speakers == simulate_speakers and abs(device - simulate) <= 0.02, name


def test_a_stereo_44_khz_sink_comes_through_at_its_level(shared_data, pulse, tmp_path, monkeypatch):
    """The sink of the issue, as PulseAudio makes it by default: its device lists 32 channels,
    of which a stereo source fills 7; their mean held the voice at 7/32 of its level."""
    dev00 = shared_data / "dev" / "dev00.wav"
    excerpt, rate = sf.read(dev00, dtype="float32", frames=6 * SAMPLE_RATE)
    played = tmp_path / "excerpt.wav"
    sf.write(played, excerpt, rate, subtype="FLOAT")
    capture = RecordingCapture(SinkMonitor("vmic", monkeypatch))

    async def record() -> None:
        async def keep() -> None:
            async for _ in capture.blocks():
                pass

        capture.start()
        kept = asyncio.create_task(keep())
        try:
            await _until(lambda: capture.stats.captured_seconds > 0, "the device delivers audio")
            await _play("vmic", played)
            await asyncio.sleep(0.5)
        finally:
            capture.stop()
            await kept

    asyncio.run(record())
    heard = capture.heard()
    lag = int(np.argmax(correlate(heard, excerpt, method="fft"))) - (len(excerpt) - 1)
    aligned = heard[lag : lag + len(excerpt)]
    assert lag >= 0 and len(aligned) == len(excerpt)
    gain = np.dot(aligned, excerpt) / np.dot(excerpt, excerpt)
    similarity = np.dot(aligned, excerpt) / np.linalg.norm(aligned) / np.linalg.norm(excerpt)
    print(f"\ngain {gain:.3f}, similarity {similarity:.4f} after PulseAudio's resampling")
    assert 0.9 < gain < 1.1 and similarity > 0.95


def test_losing_the_device_writes_what_was_heard_and_exits_1(shared_data, pulse, tmp_path):
    rttm, stdout, stderr = tmp_path / "session.rttm", tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("w") as out, stderr.open("w") as errors:
        live = subprocess.Popen(
            [sys.executable, "-m", "streamdiar.cli", "live", "--input-device", "pulse",
             "--rttm", str(rttm)],
            stdout=out,
            stderr=errors,
            cwd=Path(streamdiar.__file__).resolve().parents[1],  # the streamdiar under test
            env={**os.environ, "PULSE_SOURCE": "vmic.monitor"},
        )  # fmt: skip
    player = None
    try:
        _wait_for(lambda: "listening to" in stderr.read_text() or live.poll() is not None)
        player = subprocess.Popen(
            ["paplay", "-d", "vmic", str(shared_data / "dev" / "dev00.wav")],
            stderr=subprocess.DEVNULL,
        )
        _wait_for(lambda: rttm.stat().st_size > 0 or live.poll() is not None)  # a turn is in
        pulse.stop()  # to PortAudio, the device is gone
        stopped = time.monotonic()
        live.wait(timeout=60)
        took = time.monotonic() - stopped
    finally:
        for process in (live, player):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    said = stderr.read_text()
    print(f"\n{said}exited {took:.1f} s after the server stopped")
    lines = said.splitlines()
    assert live.returncode == 1, said
    assert all(line.startswith("streamdiar: ") for line in lines), said  # no library noise
    found = re.fullmatch(
        r"streamdiar: error: the input device 'pulse' went away \(after ([\d.]+) s captured\); "
        r"(\d+) turns? written before",
        lines[-1],
    )
    assert found, said
    assert int(found.group(2)) == len(rttm.read_text().splitlines()) > 0
    ends = [segment.end for segment in load_rttm(rttm)["pulse"].itersegments()]
    assert max(ends) <= float(found.group(1)) + 0.05  # turns of the audio captured
    assert "SPEAKER_00" in stdout.read_text()
