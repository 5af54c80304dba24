"""Async audio sources: blocks of float32 mono audio at SAMPLE_RATE, from files or arrays.

Files are decoded block by block and never held whole in memory. Formats libsndfile reads
(WAV, FLAC, OGG...) go through soundfile, everything else (MP3, M4A...) through an ffmpeg
subprocess.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from streamdiar.core.types import SAMPLE_RATE
from streamdiar.errors import StreamdiarError

_READ_BYTES = 4  # bytes per f32le sample from ffmpeg
# a file is read as fast as it decodes: what comes before the model costs per block, and
# blocks of 0.5 s took 2 s of CPU time for an hour of WAV where 5 s take 0.7
FILE_BLOCK_SECONDS = 5.0


class AudioError(StreamdiarError):
    """A problem with a user's audio input; str(error) is one clear line naming the file."""


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    duration: float | None  # seconds, None if unknown
    sample_rate: int  # native rate of the file
    channels: int
    codec: str  # e.g. "WAV PCM_16", "mp3": short human description


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_path(path: Path) -> None:
    """Raises AudioError for inputs no decoder should even be tried on."""
    if not path.exists():
        raise AudioError(f"no such file: {path}")
    if path.is_dir():
        raise AudioError(f"{path} is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path} is empty (0 bytes)")


def _libsndfile_decodes(major_format: str) -> bool:
    """Whether libsndfile, rather than ffmpeg, decodes a file it opens as `major_format`.

    Recent libsndfile builds read MP3 through mpg123, which prints corrupt-frame errors straight
    to the process's stderr and silently drops those frames; ffmpeg takes MP3 when it is
    installed so that such damage becomes a warning.
    """
    return major_format != "MP3" or shutil.which("ffmpeg") is None


def _ffmpeg_input(path: Path) -> str:
    # The file: prefix stops ffmpeg from reading a name like "a:b.mp3" as protocol "a".
    return f"file:{path}"


def _not_installed(path: Path) -> AudioError:
    return AudioError(f"cannot decode {path}: ffmpeg is not installed")


def probe(path: str | Path) -> AudioInfo:
    """Checks a file before work starts.

    Raises AudioError for a missing path, a directory, an empty file, or a file neither
    libsndfile nor ffprobe can decode. libsndfile answers for the formats it reads, ffprobe
    for the rest.
    """
    path = Path(path)
    _check_path(path)
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError:
        return _ffprobe(path)
    if not _libsndfile_decodes(info.format):
        return _ffprobe(path)
    return AudioInfo(
        path=path,
        duration=info.frames / info.samplerate,
        sample_rate=info.samplerate,
        channels=info.channels,
        codec=f"{info.format} {info.subtype}",
    )


def _ffprobe(path: Path) -> AudioInfo:
    command = [
        "ffprobe", "-v", "error", "-select_streams", "a:0",
        "-show_entries", "format=duration:stream=sample_rate,channels,codec_name",
        "-of", "json", _ffmpeg_input(path),
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    except FileNotFoundError:
        raise _not_installed(path) from None
    if result.returncode != 0:
        raise AudioError(f"cannot decode {path}: {_last_line(result.stderr, path)}")
    report = json.loads(result.stdout)
    streams = report.get("streams") or []
    if not streams:
        raise AudioError(f"cannot decode {path}: it holds no audio stream")
    stream = streams[0]
    duration = report.get("format", {}).get("duration")
    try:
        seconds = float(duration) if duration is not None else None
    except ValueError:  # ffprobe prints "N/A" when it cannot tell
        seconds = None
    return AudioInfo(
        path=path,
        duration=seconds,
        sample_rate=int(stream.get("sample_rate", 0)),
        channels=int(stream.get("channels", 0)),
        codec=stream.get("codec_name", "unknown"),
    )


def _last_line(stderr: str, path: Path) -> str:
    """ffmpeg's last complaint, without the input name it starts with (the caller names it)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    return _one_line(lines[-1].removeprefix(f"{_ffmpeg_input(path)}: "))


class NonFiniteCounter:
    """Replaces NaN/Inf samples by 0 and remembers how many there were."""

    def __init__(self) -> None:
        self.count = 0

    def clean(self, samples: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(samples)
        if bad.any():
            self.count += int(bad.sum())
            samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
        return samples

    def warn(self, source: str | Path) -> None:
        if self.count:
            warnings.warn(f"{source}: replaced {self.count} NaN/Inf samples with 0")


class MonoResampler:
    """Streaming conversion of (frames, channels) float32 blocks at `sample_rate` to
    (samples,) mono float32 at SAMPLE_RATE; soxr keeps its state across blocks, so block
    boundaries leave no trace."""

    def __init__(self, sample_rate: int) -> None:
        self._resampler = (
            soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32")
            if sample_rate != SAMPLE_RATE
            else None
        )

    def __call__(self, data: np.ndarray, last: bool = False) -> np.ndarray:
        mono = data.mean(axis=1, dtype=np.float32)  # (frames,)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        return mono


async def file_blocks(
    path: str | Path, block_seconds: float = FILE_BLOCK_SECONDS
) -> AsyncIterator[np.ndarray]:
    """Yields (samples,) float32 mono SAMPLE_RATE blocks of about block_seconds each.

    Raises AudioError when the file cannot be decoded at all. A truncated file yields what it
    holds; corrupt frames reported by ffmpeg and NaN/Inf samples (replaced by 0) give a
    one-line warning instead of an error.
    """
    if block_seconds <= 0:
        raise ValueError(f"block_seconds must be positive, got {block_seconds}")
    path = Path(path)
    _check_path(path)
    try:
        sound = await asyncio.to_thread(sf.SoundFile, str(path))
    except sf.LibsndfileError:
        sound = None
    if sound is not None and not _libsndfile_decodes(sound.format):
        sound.close()
        sound = None
    blocks = (
        _ffmpeg_blocks(path, block_seconds)
        if sound is None
        else _soundfile_blocks(sound, path, block_seconds)
    )
    try:
        async for block in blocks:
            yield block
    finally:
        await blocks.aclose()


async def _soundfile_blocks(
    sound: sf.SoundFile, path: Path, block_seconds: float
) -> AsyncIterator[np.ndarray]:
    counter = NonFiniteCounter()
    frames = max(1, round(block_seconds * sound.samplerate))
    to_mono = MonoResampler(sound.samplerate)
    try:
        while True:
            # (frames, channels); fewer frames near the end, none once it is reached
            data = await asyncio.to_thread(sound.read, frames, dtype="float32", always_2d=True)
            last = len(data) < frames
            mono = to_mono(counter.clean(data), last=last)
            if len(mono):
                yield mono
            if last:
                break
    finally:
        sound.close()
    counter.warn(path)


async def _ffmpeg_blocks(path: Path, block_seconds: float) -> AsyncIterator[np.ndarray]:
    command = [
        "ffmpeg", "-nostdin", "-v", "error", "-i", _ffmpeg_input(path),
        "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-",
    ]  # fmt: skip
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise _not_installed(path) from None
    assert process.stdout is not None and process.stderr is not None
    # stderr is drained alongside stdout so a chatty ffmpeg never blocks on a full pipe;
    # only its tail is kept.
    stderr_tail = bytearray()
    stderr_task = asyncio.create_task(_drain(process.stderr, stderr_tail))
    counter = NonFiniteCounter()
    chunk_bytes = max(1, round(block_seconds * SAMPLE_RATE)) * _READ_BYTES
    decoded = 0  # samples yielded
    try:
        while True:
            try:
                raw = await process.stdout.readexactly(chunk_bytes)
            except asyncio.IncompleteReadError as end:
                raw = end.partial
            usable = len(raw) - len(raw) % _READ_BYTES
            if usable:
                block = counter.clean(np.frombuffer(raw[:usable], dtype="<f4").astype(np.float32))
                decoded += len(block)
                yield block
            if len(raw) < chunk_bytes:
                break
        returncode = await process.wait()
        await stderr_task
    finally:
        if process.returncode is None:  # the consumer stopped early
            process.kill()
            await process.wait()
        if not stderr_task.done():
            stderr_task.cancel()
            await asyncio.gather(stderr_task, return_exceptions=True)

    stderr = stderr_tail.decode(errors="replace")
    complaint = _last_line(stderr, path) if stderr.strip() else None
    if decoded == 0 and returncode != 0:
        raise AudioError(
            f"cannot decode {path}: {complaint or f'ffmpeg exited with status {returncode}'}"
        )
    if decoded and (complaint or returncode != 0):
        warnings.warn(
            f"{path}: ffmpeg reported errors, kept {decoded / SAMPLE_RATE:.1f} s of audio: "
            f"{complaint or f'exit status {returncode}'}"
        )
    counter.warn(path)


async def _drain(stream: asyncio.StreamReader, tail: bytearray, keep: int = 4096) -> None:
    """Reads `stream` to its end, keeping its last `keep` bytes in `tail`."""
    while chunk := await stream.read(keep):
        tail += chunk
        del tail[:-keep]


async def array_blocks(samples: np.ndarray, block_size: int) -> AsyncIterator[np.ndarray]:
    """In-memory source for tests: (samples,) float32 at SAMPLE_RATE in blocks of block_size
    samples, the last one shorter. Yields control to the loop between blocks."""
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    samples = np.asarray(samples, dtype=np.float32)
    for start in range(0, len(samples), block_size):
        yield samples[start : start + block_size]
        await asyncio.sleep(0)
