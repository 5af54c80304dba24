"""`streamdiar live`: capture through the audio callback, the pipeline behind it, stopping."""

import asyncio
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from threadpoolctl import threadpool_limits

import streamdiar
from streamdiar.cli import main
from streamdiar.cli.live import run_live, summary
from streamdiar.session import build_live_diarizer
from streamdiar.cli.live_view import LiveView
from streamdiar.core.embedded import EmbeddedBackend
from streamdiar.core.types import Turn
from streamdiar.evaluation import diarization_error_rate, load_rttm
from streamdiar.session import build_diarizer
from streamdiar.stream.microphone import (
    AudioCallback,
    Capture,
    FinishedCallback,
    InputStream,
    SimulatedMicrophone,
    input_devices,
)
from streamdiar.stream.sinks import RttmWriter
from streamdiar.stream.sources import file_blocks

pytestmark = pytest.mark.realtime  # capture runs at real time and commits are timed


class TimedInput:
    """A SimulatedMicrophone whose callback is watched: when each block arrived (the capture
    clock of the audio it ends) and how long the callback took."""

    def __init__(self, source: SimulatedMicrophone) -> None:
        self._source = source
        self.name, self.samplerate, self.channels = source.name, source.samplerate, source.channels
        self.block_ends: list[tuple[float, float]] = []  # (seconds captured so far, monotonic)
        self.callback_seconds: list[float] = []
        self._captured = 0

    def open(self, callback: AudioCallback, finished: FinishedCallback) -> InputStream:
        def watched(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            started = time.perf_counter()
            callback(indata, frames, time_info, status)
            self.callback_seconds.append(time.perf_counter() - started)
            self._captured += frames
            self.block_ends.append((self._captured / self.samplerate, time.monotonic()))

        return self._source.open(watched, finished)

    def captured_at(self, seconds: float) -> float:
        """When the audio `seconds` into the stream had been captured."""
        return next(at for end, at in self.block_ends if end >= seconds - 1e-6)


def _rttm(turns: list[Turn], path: Path, uri: str) -> dict:
    with RttmWriter(path) as writer:
        for turn in turns:
            writer.write(uri, turn)
    return load_rttm(path)


def test_live_at_real_time_scores_as_file_mode_and_commits_within_the_latency(
    shared_data, backend, tmp_path
):
    path = shared_data / "dev" / "sample.wav"
    latency = 2.0
    source = TimedInput(SimulatedMicrophone(path))
    capture = Capture(source)
    diarizer = build_live_diarizer(backend, latency)
    committed: list[tuple[Turn, float]] = []  # each turn, with when it was committed
    with threadpool_limits(1, user_api="blas"):  # as the CLI runs it
        asyncio.run(
            run_live(capture, diarizer, lambda turn: committed.append((turn, time.monotonic())))
        )
    file_turns: list[Turn] = []
    file_mode = build_diarizer(backend, latency, batch_size=32)
    asyncio.run(file_mode.run(file_blocks(path), file_turns.append))

    reference = load_rttm(shared_data / "dev" / "sample.rttm")
    live_der = diarization_error_rate(
        reference, _rttm([turn for turn, _ in committed], tmp_path / "live.rttm", "sample")
    ).der
    file_rttm = _rttm(file_turns, tmp_path / "file.rttm", "sample")
    file_der = diarization_error_rate(reference, file_rttm).der
    delays = np.array([at - source.captured_at(turn.end) for turn, at in committed])
    print(
        f"\nDER live {100 * live_der:.2f} %, file mode {100 * file_der:.2f} % "
        f"(latency {latency:g} s)"
        f"\ncommit delay of {len(delays)} turns (s): min {delays.min():.2f}, median "
        f"{np.median(delays):.2f}, 90th percentile {np.percentile(delays, 90):.2f}, "
        f"max {delays.max():.2f}; each: {' '.join(f'{d:.2f}' for d in delays)}"
        f"\ncallback: longest {1000 * max(source.callback_seconds):.2f} ms"
    )
    assert abs(live_der - file_der) <= 0.02
    assert capture.stats.dropped_seconds == 0 and capture.stats.overflows == 0
    assert capture.stats.captured_seconds == pytest.approx(30.0)
    assert delays.max() <= latency + 1.0


class SlowBackend:
    """The embedded backend, slowed down to well below real time at any replay speed."""

    def __init__(self, backend: EmbeddedBackend, seconds_per_window: float) -> None:
        self._backend = backend
        self._seconds_per_window = seconds_per_window

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    def infer(self, waveforms: Any, step_samples: int | None = None, streams: Any = None) -> list:
        time.sleep(self._seconds_per_window * len(waveforms))
        return self._backend.infer(waveforms, step_samples, streams)


def test_a_slow_consumer_drops_the_oldest_audio_without_stalling_capture(
    shared_data, backend, tmp_path
):
    speed = 10.0
    source = TimedInput(SimulatedMicrophone(shared_data / "dev" / "sample.wav", speed=speed))
    capture = Capture(source, max_queue_seconds=1.0)
    diarizer = build_live_diarizer(SlowBackend(backend, 0.1), 2.0)
    turns: list[Turn] = []
    started = time.monotonic()
    talk = asyncio.run(run_live(capture, diarizer, turns.append))
    finished = time.monotonic()

    line = summary(capture, talk)
    print(f"\n{line}\ncallback: longest {1000 * max(source.callback_seconds):.2f} ms")
    stats = capture.stats
    assert stats.captured_seconds == pytest.approx(30.0)
    assert stats.dropped_seconds > 5.0
    assert f"{stats.dropped_seconds:.1f} s dropped" in line
    # capture kept its pace: the last block came when 30 s of audio had been heard
    assert source.block_ends[-1][1] - started == pytest.approx(30.0 / speed, abs=0.5)
    # the callback copies and hands over; beyond that it only ever waits for the GIL
    assert np.median(source.callback_seconds) < 0.001 and max(source.callback_seconds) < 0.25
    assert finished - source.block_ends[-1][1] < 5.0  # what was queued, then the end
    kept = stats.captured_seconds - stats.dropped_seconds
    rttm = _rttm(turns, tmp_path / "slow.rttm", "sample")
    assert turns and set(rttm) == {"sample"}
    assert all(0 <= turn.start < turn.end <= kept + 0.01 for turn in turns)


def _start_live(env: dict[str, str], rttm: Path, audio: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamdiar.cli", "live", "--simulate", str(audio),
         "--speed", "4", "--rttm", str(rttm)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip


def _when_listening(processes: dict, stderr: dict) -> dict:
    """When each process said on stderr that capture started (what it said goes to `stderr`).
    Reads the raw pipes, as a buffered reader could hold the line that select waits for."""
    waiting = selectors.DefaultSelector()
    for key, process in processes.items():
        waiting.register(process.stderr.fileno(), selectors.EVENT_READ, key)
    listening = {}
    while len(listening) < len(processes):
        events = waiting.select(timeout=120)
        assert events, f"live did not start within 2 minutes: {stderr}"
        for ready, _ in events:
            chunk = os.read(ready.fd, 4096).decode()
            stderr[ready.data].append(chunk)
            if "listening to" in "".join(stderr[ready.data]):
                listening[ready.data] = time.monotonic()
                waiting.unregister(ready.fd)
            elif not chunk:
                raise AssertionError(f"live never started: {''.join(stderr[ready.data])}")
    return listening


def test_a_signal_ends_the_session_with_a_complete_rttm_and_exit_0(shared_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(streamdiar.__file__).resolve().parents[1])}
    audio = shared_data / "dev" / "sample.wav"
    signals = (signal.SIGINT, signal.SIGTERM)
    rttms = {sig: tmp_path / f"{sig.name}.rttm" for sig in signals}
    processes = {sig: _start_live(env, rttms[sig], audio) for sig in signals}  # side by side
    stderr: dict[signal.Signals, list[str]] = {sig: [] for sig in signals}
    try:
        listening = _when_listening(processes, stderr)
        for sig, process in sorted(processes.items(), key=lambda item: listening[item[0]]):
            # 12 s of audio at 4x: speech runs from 6.7 s on
            time.sleep(max(0.0, listening[sig] + 3.0 - time.monotonic()))
            process.send_signal(sig)
        outputs = {sig: process.communicate(timeout=60) for sig, process in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    for sig, (stdout, rest) in outputs.items():
        errors = "".join(stderr[sig]) + rest
        assert processes[sig].returncode == 0, errors
        assert "Traceback" not in errors
        found = re.search(r"sample: ([\d.]+) s captured, 0\.0 s dropped.*: SPEAKER_00", errors)
        assert found, errors
        captured = float(found.group(1))
        assert 8.0 < captured < 25.0, errors  # stopped well before the end of the file
        ends = [segment.end for segment in load_rttm(rttms[sig])["sample"].itersegments()]
        # everything heard is in: the speech running when the signal came is flushed too
        assert captured - 1.0 <= max(ends) <= captured + 0.05, (sig.name, ends, captured)
        assert "SPEAKER_00" in stdout  # turns printed as plain lines, stdout being a pipe


def _view(backend: EmbeddedBackend, shared_data: Path, terminal: bool) -> tuple[LiveView, StringIO]:
    screen = StringIO()
    console = Console(file=screen, force_terminal=terminal, width=100)
    capture = Capture(SimulatedMicrophone(shared_data / "dev" / "sample.wav"))
    return LiveView(capture, build_live_diarizer(backend, 2.0), console), screen


def test_the_live_view_redraws_at_least_twice_a_second(backend, shared_data):
    view, screen = _view(backend, shared_data, terminal=True)
    view.write("sample", Turn(1.0, 2.5, "SPEAKER_00"))

    async def show_for_a_second() -> None:
        refresh = asyncio.create_task(view.run())
        await asyncio.sleep(1.0)
        refresh.cancel()
        await asyncio.gather(refresh, return_exceptions=True)

    asyncio.run(show_for_a_second())
    drawn = screen.getvalue()
    assert drawn.count("elapsed ") >= 3  # the first frame, then one each 0.25 s
    assert "SPEAKER_00" in drawn and "lag 0.0 s (latency 2 s)" in drawn


def test_the_live_view_prints_plain_lines_off_a_terminal(backend, shared_data):
    view, screen = _view(backend, shared_data, terminal=False)
    view.write("sample", Turn(1.0, 2.5, "SPEAKER_00"))
    assert screen.getvalue() == "sample\n   1.00 →   2.50  SPEAKER_00\n"


def test_a_missing_input_device_is_one_line_and_exit_2(run_cli):
    result = run_cli("live", "--input-device", "no such microphone")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "streamdiar: error: no input device matching 'no such microphone' "
        "(see: streamdiar live --list-devices)"
    ]


def test_no_input_device_at_all_is_one_line_and_exit_2(run_cli):
    if input_devices():
        pytest.skip("this machine has a microphone")
    listed = run_cli("live", "--list-devices")
    assert listed.returncode == 0
    assert listed.stderr == "streamdiar: no input devices found\n"
    result = run_cli("live")
    assert result.returncode == 2
    assert result.stderr.startswith("streamdiar: error: no default input device")
    assert len(result.stderr.splitlines()) == 1


def test_no_portaudio_is_one_line_and_exit_2(monkeypatch, capsys):
    import ctypes.util

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert main(["live", "--list-devices"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("streamdiar: error: cannot capture audio: PortAudio library not found")
    assert len(error.splitlines()) == 1
