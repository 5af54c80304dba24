"""faster-whisper as the live transcriber of `streamdiar live --transcribe MODEL`.

faster-whisper is optional and imported only here, when asked for. Only a model already on
this machine is used (a name in the local Hugging Face cache, or a CTranslate2 model
directory): a live session never starts a download.

Audio is transcribed in chunks of a few seconds in a worker thread, so that the event loop
(capture, the diarizer) runs on meanwhile. Of each chunk, the segments that end well before
its end are final; the audio from their end on is transcribed again with the next chunk, so
that a word cut at a chunk's end is heard whole. Exact silence (a muted input, or what the tee
stands in for audio this transcriber was too slow to take) ends a chunk and is skipped.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import numpy as np

from streamdiar.core.types import SAMPLE_RATE
from streamdiar.errors import StreamdiarError
from streamdiar.transcript.types import Segment, Word

INSTALL_HINT = (
    "--transcribe needs faster-whisper: pip install 'streamdiar[transcribe]' (or faster-whisper), "
    "and a Whisper model on this machine: download one once, e.g. python -c "
    "\"import faster_whisper as f; f.WhisperModel('small')\", or pass a CTranslate2 model directory"
)


class WhisperError(StreamdiarError):
    """faster-whisper or the model is missing: one line saying what to install."""


def check_faster_whisper() -> None:
    """Raises WhisperError unless faster-whisper can be imported (it is imported here)."""
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        raise WhisperError(INSTALL_HINT) from None


def prepare_whisper(model: str, language: str | None = None) -> Callable[[str], WhisperTranscriber]:
    """Checks that faster-whisper is installed before any audio or model is touched; the
    function returned loads `model` once the device is known (see load_whisper)."""
    check_faster_whisper()
    return lambda device: load_whisper(model, device, language)


def load_whisper(model: str, device: str, language: str | None = None) -> WhisperTranscriber:
    """A transcriber with faster-whisper's `model` (a size such as "small", a Hugging Face id,
    or a model directory) on `device` ("cuda" gives float16; anything else CPU with int8)."""
    check_faster_whisper()
    from faster_whisper import WhisperModel

    on_gpu = device == "cuda"
    try:
        whisper = WhisperModel(
            model,
            device="cuda" if on_gpu else "cpu",
            compute_type="float16" if on_gpu else "int8",
            local_files_only=True,
        )
    except Exception as error:  # huggingface_hub, ctranslate2 and faster-whisper raise their own
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WhisperError(
            f"cannot load Whisper model {model!r}: {reason} (only models already on this "
            "machine are used: download it once with faster-whisper, or pass a model directory)"
        ) from None
    return WhisperTranscriber(whisper, language)


class WhisperTranscriber:
    """The Transcriber protocol over a faster_whisper.WhisperModel (or an object with its
    `transcribe(audio, **options) -> (segments, info)`)."""

    def __init__(
        self,
        model: Any,
        language: str | None = None,
        chunk_seconds: float = 6.0,
        max_seconds: float = 25.0,
        margin: float = 1.0,
    ) -> None:
        """chunk_seconds: audio gathered before a chunk is transcribed. max_seconds: a chunk
        this long is final whole (Whisper hears 30 s at most). margin: a segment ending
        closer than this to the chunk's end is transcribed again with the next chunk."""
        self._model = model
        self._language = language
        self._chunk_frames = round(chunk_seconds * SAMPLE_RATE)
        self._max_frames = round(max_seconds * SAMPLE_RATE)
        self._margin = margin

    async def transcribe(self, blocks: AsyncIterable[np.ndarray]) -> AsyncIterator[Segment]:
        pending: list[np.ndarray] = []  # audio not yet final, from `offset` s on
        frames = 0
        offset = 0.0
        next_try = self._chunk_frames  # frames pending before the next transcription
        async for block in blocks:
            silent = not block.any()
            if not silent:
                pending.append(block)
                frames += len(block)
                if frames < next_try:
                    continue
            elif not frames:  # silence with nothing pending: skipped
                offset += len(block) / SAMPLE_RATE
                continue
            segments, kept = await self._final_part(np.concatenate(pending), offset, silent)
            for segment in segments:
                yield segment
            offset += (frames - len(kept)) / SAMPLE_RATE
            pending, frames = ([kept] if len(kept) else []), len(kept)
            next_try = frames + self._chunk_frames
            if silent:
                offset += len(block) / SAMPLE_RATE
        if frames:
            segments, _ = await self._final_part(np.concatenate(pending), offset, True)
            for segment in segments:
                yield segment

    async def _final_part(
        self, audio: np.ndarray, offset: float, whole: bool = False
    ) -> tuple[list[Segment], np.ndarray]:
        """The final segments of `audio` (which starts `offset` s into the stream), and the
        audio after them, to be transcribed again with what comes next."""
        found = await asyncio.to_thread(self._transcribe, audio)
        duration = len(audio) / SAMPLE_RATE
        final = []
        if whole or len(audio) >= self._max_frames:
            final, cut = found, duration
        else:
            for segment in found:  # a prefix: those ending before the margin
                if segment.end > duration - self._margin:
                    break
                final.append(segment)
            if final:
                cut = final[-1].end
            else:  # nothing heard: what is well before the end holds no speech to wait for
                cut = 0.0 if found else max(0.0, duration - self._margin)
        shifted = [
            faster_whisper_segment(segment, offset, duration)
            for segment in final
            if segment.text.strip()
        ]
        return shifted, audio[min(len(audio), round(cut * SAMPLE_RATE)) :]

    def _transcribe(self, audio: np.ndarray) -> list[Any]:
        segments, _ = self._model.transcribe(
            audio,
            language=self._language,
            word_timestamps=True,
            vad_filter=True,  # no text made up over silence
            condition_on_previous_text=False,  # each chunk on its own: no repeated lines
        )
        return list(segments)  # a lazy generator: decoding happens here, in the worker thread


def faster_whisper_segment(
    segment: Any, offset: float = 0.0, duration: float = math.inf
) -> Segment:
    """A segment faster-whisper gives (its `start`, `end`, `text`, and `words` of `start`, `end`
    and `word`, or None), its times clipped to a chunk of `duration` s that starts `offset` s
    into the stream."""

    def at(seconds: float) -> float:
        return offset + min(max(float(seconds), 0.0), duration)

    words = tuple(
        Word(at(w.start), max(at(w.start), at(w.end)), w.word.strip())
        for w in segment.words or ()
        if w.word.strip()
    )
    start = at(segment.start)
    return Segment(start, max(start, at(segment.end)), segment.text.strip(), words)
