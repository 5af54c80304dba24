"""Session: a stream whose audio an application pushes block by block, from a plain thread."""

from __future__ import annotations

from numpy.typing import ArrayLike

from streamdiar.core.types import Turn
from streamdiar.core.voiceprints import Naming
from streamdiar.errors import SessionClosedError
from streamdiar.stream.pipeline import StreamingDiarizer
from streamdiar.stream.pushed import BlockConverter
from streamdiar.stream.windows import Windower


class Session:
    """One stream of audio pushed block by block: each push returns the turns it committed,
    `close()` the rest. Made by `Diarizer.session()`.

    No event loop is needed: push from a sound callback's consumer thread, a loop over a file,
    a notebook. A push returns once the model has run over the windows the block completed (one
    per step of audio, 0.5 s by default, once a window's worth has arrived). A session is one
    stream: push from one thread at a time. Sessions of one Diarizer may run in several threads
    at once, each with its own speakers, on the same models.
    """

    def __init__(self, pipeline: StreamingDiarizer, sample_rate: int, channels: int) -> None:
        self._convert = BlockConverter(sample_rate, channels)
        self._pipeline = pipeline
        self._windower = Windower(pipeline.window_duration, pipeline.window_step)
        self._closed = False

    @property
    def sample_rate(self) -> int:
        return self._convert.sample_rate

    @property
    def channels(self) -> int:
        return self._convert.channels

    @property
    def committed_until(self) -> float:
        """Seconds from the first sample pushed up to which every turn is final."""
        return self._pipeline.stitcher.committed_until

    @property
    def namings(self) -> list[Naming]:
        """The speakers named after enrolled people so far (`Diarizer(speakers=...)`), in
        the order the names were given."""
        return self._pipeline.stats.namings

    def push(self, samples: ArrayLike) -> list[Turn]:
        """Diarizes the next block of the stream and returns the turns it committed (often
        none), in the order they were committed.

        samples: int16 or float32 (float64 is taken too) at the session's sample rate, any
        number of frames: (frames,) for mono, (frames, channels), or interleaved
        (frames * channels,). Raises AudioError for samples of another type or shape, and
        SessionClosedError after `close()`.
        """
        if self._closed:
            raise SessionClosedError("the session is closed: start a new one for more audio")
        return self._pipeline.push_windows(self._windower.push(self._convert(samples)))

    def close(self) -> list[Turn]:
        """Ends the stream: the audio not yet diarized is, every open turn is committed, and
        those turns are returned. Closing again returns no turns."""
        if self._closed:
            return []
        self._closed = True
        tail = self._windower.push(self._convert.finish()) + self._windower.finish()
        return self._pipeline.push_windows(tail) + self._pipeline.flush()
