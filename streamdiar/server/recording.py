"""What `streamdiar serve --record DIR` keeps of a stream: the audio it received, as sent, in a
WAV file, and its turns as RTTM and JSON lines, written as they come. Without `--record`
the server writes nothing to disk."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from streamdiar.core.types import Turn
from streamdiar.stream.sinks import JsonlWriter, RttmWriter

if TYPE_CHECKING:
    from streamdiar.server.app import StreamFormat

WAV_SUBTYPES = {"pcm_s16le": "PCM_16", "pcm_f32le": "FLOAT"}


class StreamRecording:
    """The files of one recorded stream, named after the time it started and its number (never
    after what a client sent): STEM.wav, STEM.rttm, STEM.jsonl."""

    def __init__(self, stem: Path, stream_format: StreamFormat) -> None:
        self.uri = stem.name
        self._audio = sf.SoundFile(
            str(stem.with_suffix(".wav")),
            "w",
            samplerate=stream_format.sample_rate,
            channels=stream_format.channels,
            subtype=WAV_SUBTYPES[stream_format.encoding],
        )
        self._rttm = RttmWriter(stem.with_suffix(".rttm"))
        self._jsonl_file = stem.with_suffix(".jsonl").open("w", encoding="utf-8")
        self._jsonl = JsonlWriter(self._jsonl_file)

    @classmethod
    def open(cls, directory: Path, stream_id: str, stream_format: StreamFormat) -> StreamRecording:
        return cls(directory / f"{time.strftime('%Y%m%dT%H%M%S')}-{stream_id}", stream_format)

    def write_audio(self, frames: np.ndarray) -> None:
        self._audio.write(frames)

    def write_turn(self, turn: Turn) -> None:
        self._rttm.write(self.uri, turn)
        self._jsonl.write(self.uri, turn)

    def close(self) -> None:
        self._audio.close()
        self._rttm.close()
        self._jsonl_file.close()
