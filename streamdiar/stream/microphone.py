"""Live audio capture for the pipeline: a microphone through sounddevice, or a file replayed at
real-time pace through exactly the same callback, in blocks of the same length.

The audio callback runs on PortAudio's thread (or the replay thread): it copies the block and
hands it to the event loop with `call_soon_threadsafe`, nothing more, so it never blocks, never
waits for the model and never raises. On the loop, blocks wait in an AudioBacklog bounded in
seconds of audio; when the pipeline falls behind, the oldest audio is dropped and counted, so
capture never stalls and the delay behind capture stays bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from streamdiar.core.types import SAMPLE_RATE
from streamdiar.errors import StreamdiarError
from streamdiar.stream.backlog import AudioBacklog, CaptureStats
from streamdiar.stream.sources import AudioError, MonoResampler, probe
from streamdiar.stream.stderr_filter import STDERR_FILTER

# Each block the callback gets, from a device as from a replayed file, so that the pipeline gets
# the same blocks from both (left to itself, PortAudio hands over whatever the host delivers:
# from 1 to a few hundred frames at a time through PulseAudio).
BLOCK_SECONDS = 0.02

# sounddevice's InputStream callback: (indata (frames, channels) float32, frames, time, status)
AudioCallback = Callable[[np.ndarray, int, Any, Any], None]
FinishedCallback = Callable[[], None]


class MicrophoneError(StreamdiarError):
    """No PortAudio library, no input device, or one that cannot be opened: one line."""


class InputStream(Protocol):
    """What capture uses of a sounddevice.InputStream."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class AudioInput(Protocol):
    """Where live audio comes from, checked before any model is loaded."""

    name: str  # what the user picked, for messages and as the RTTM uri
    samplerate: int  # native rate of the blocks the callback gets
    channels: int

    def open(self, callback: AudioCallback, finished: FinishedCallback) -> InputStream:
        """A stream, not yet started, that calls `callback` with each block and `finished`
        once it stops for good."""
        ...


class Capture:
    """Runs an AudioInput's stream and hands its blocks to the pipeline as an async iterator.

    start() and stop() run on the event loop; `callback` runs on the audio thread.
    """

    def __init__(self, source: AudioInput, max_queue_seconds: float = 5.0) -> None:
        self.source = source
        self.stats = CaptureStats()
        self.started_at: float | None = None  # time.monotonic() when capture started
        # (frames, channels) blocks at the source's rate
        self._backlog = AudioBacklog(source.samplerate, max_queue_seconds, self.stats)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: InputStream | None = None
        self._stopping = False
        # the stream ended by itself: the end of a replayed file, or a device that went away
        self.stream_ended = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stream = self.source.open(self.callback, self._finished)
        self.started_at = time.monotonic()
        self._stream.start()

    def stop(self) -> None:
        """Stops the stream; blocks() ends after handing out what is queued. Idempotent."""
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        if self._loop is None:
            self._close()
        else:  # after the blocks the callback handed over before the stream stopped
            self._loop.call_soon(self._close)

    def callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """sounddevice's callback: a copy of the block goes to the loop, nothing else."""
        loop = self._loop  # set before the stream starts
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._put, indata.copy(), bool(status.input_overflow))
        except RuntimeError:  # the loop is closed: capture is over
            pass

    def _finished(self) -> None:
        """The stream ended, stopped by stop() or by itself; runs on the audio thread."""
        self.stream_ended = not self._stopping
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._close)
        except RuntimeError:  # the loop is closed: capture is over
            pass

    def _put(self, block: np.ndarray, overflow: bool) -> None:
        if self._backlog.closed:  # a block that came while the stream was stopping
            return
        self.stats.overflows += overflow
        self._backlog.put(block)

    def _close(self) -> None:
        self._backlog.close()

    async def blocks(self) -> AsyncIterator[np.ndarray]:
        """(samples,) float32 mono blocks at SAMPLE_RATE, as the pipeline takes them."""
        to_mono = MonoResampler(self.source.samplerate)
        async for block in self._backlog.blocks():
            mono = to_mono(block)
            if len(mono):
                yield mono
        tail = to_mono(np.zeros((0, self.source.channels), np.float32), last=True)
        if len(tail):
            yield tail


def _sounddevice() -> ModuleType:
    """sounddevice, imported on first use: it loads PortAudio when imported."""
    try:
        import sounddevice
    except (OSError, ImportError) as error:  # OSError: "PortAudio library not found"
        raise MicrophoneError(
            f"cannot capture audio: {error} (on Linux: apt-get install libportaudio2)"
        ) from None
    return sounddevice


def input_devices() -> list[str]:
    """One line per input device: index, name, channels and native rate; `*` marks the
    default. Empty when there is none."""
    sd = _sounddevice()
    default = sd.default.device[0]
    return [
        f"{'*' if device['index'] == default else ' '} {device['index']:3d}  {device['name']}  "
        f"({device['max_input_channels']} ch, {device['default_samplerate']:g} Hz)"
        for device in sd.query_devices()
        if device["max_input_channels"] > 0
    ]


class Microphone:
    """An input device by name (or part of it) or index; None is the default device."""

    def __init__(self, device: str | None) -> None:
        sd = self._sd = _sounddevice()
        selector: int | str | None = int(device) if device and device.isdigit() else device
        try:
            info = sd.query_devices(selector, kind="input")
        except ValueError:  # no such name, or not an input
            raise MicrophoneError(
                f"no input device matching {device!r} (see: streamdiar live --list-devices)"
            ) from None
        except sd.PortAudioError:
            what = "no default input device" if device is None else f"no input device {device}"
            raise MicrophoneError(f"{what} (see: streamdiar live --list-devices)") from None
        self._index = info["index"]
        self.name = info["name"]
        self.samplerate, self.channels = self._rate_and_channels(
            round(info["default_samplerate"]), info["max_input_channels"]
        )

    def _rate_and_channels(self, native_rate: int, max_channels: int) -> tuple[int, int]:
        """The rate and channel count to capture at: 16 kHz mono where the device converts to
        it (PulseAudio, PipeWire, ALSA's plug devices, many USB microphones), else mono at the
        native rate, else the native rate and all channels.

        Sound servers list up to 32 channels for their PortAudio device while their source has
        one or two: the rest come as copies or silence, and their mean is not the signal."""
        for rate, channels in ((SAMPLE_RATE, 1), (native_rate, 1)):
            try:
                self._sd.check_input_settings(
                    self._index, channels=channels, dtype="float32", samplerate=rate
                )
            except (ValueError, self._sd.PortAudioError):
                continue
            return rate, channels
        return native_rate, max_channels

    def open(self, callback: AudioCallback, finished: FinishedCallback) -> InputStream:
        try:
            stream = self._sd.InputStream(
                device=self._index,
                samplerate=self.samplerate,
                channels=self.channels,
                dtype="float32",
                blocksize=round(BLOCK_SECONDS * self.samplerate),
                callback=callback,
                finished_callback=finished,
            )
        except self._sd.PortAudioError as error:
            raise MicrophoneError(f"cannot open input device {self.name!r}: {error}") from None
        return _DeviceStream(stream)


class _DeviceStream:
    """A sounddevice.InputStream that keeps the C libraries' lines off the terminal from start
    to close (see StderrFilter)."""

    def __init__(self, stream: InputStream) -> None:
        self._stream = stream
        self._filtering = False

    def start(self) -> None:
        STDERR_FILTER.start()
        self._filtering = True
        self._stream.start()

    def stop(self) -> None:
        self._stream.stop()  # sounddevice ignores its errors: those of a device gone

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            if self._filtering:
                self._filtering = False
                STDERR_FILTER.stop()


@dataclass(frozen=True)
class _NoFlags:
    """A replayed file never overflows: stands for sounddevice.CallbackFlags()."""

    input_overflow: bool = False


class SimulatedMicrophone:
    """A file played as if it came from a microphone: blocks of `block_seconds` reach the
    callback from a thread that sleeps until each block has been "heard" (at `speed` times
    real time)."""

    def __init__(
        self, path: Path, speed: float = 1.0, block_seconds: float = BLOCK_SECONDS
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        info = probe(path)
        try:
            sf.info(str(path))
        except sf.LibsndfileError:
            raise AudioError(f"cannot replay {path}: only WAV, FLAC and OGG files") from None
        self.path = Path(path)
        self.name = self.path.stem
        self.samplerate = info.sample_rate
        self.channels = info.channels
        self.speed = speed
        self.block_frames = max(1, round(block_seconds * info.sample_rate))

    def open(self, callback: AudioCallback, finished: FinishedCallback) -> _ReplayStream:
        return _ReplayStream(self, callback, finished)


class _ReplayStream:
    def __init__(
        self, source: SimulatedMicrophone, callback: AudioCallback, finished: FinishedCallback
    ) -> None:
        self._source = source
        self._callback = callback
        self._finished = finished
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._play, name="simulated-microphone")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.stop()

    def _play(self) -> None:
        source = self._source
        try:
            with sf.SoundFile(str(source.path)) as sound:
                started = time.monotonic()
                played = 0  # frames
                for block in sound.blocks(source.block_frames, dtype="float32", always_2d=True):
                    played += len(block)
                    heard_at = started + played / source.samplerate / source.speed
                    if self._stopping.wait(max(0.0, heard_at - time.monotonic())):
                        break
                    self._callback(block, len(block), None, _NoFlags())
        finally:
            self._finished()
