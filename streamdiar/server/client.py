"""A Python client of `streamdiar serve`: an audio file streamed to the server as a microphone
would stream it (blocks at real-time pace, or faster), and the events it sends back. The
benchmark (`streamdiar bench --serve`) and the tests use it; it shows the protocol in a page
of code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamdiar.core.types import Turn

# Seconds of lag beyond the latency a stream that keeps up may show: a step, a batch of several
# streams' windows and a second of slack. A server that keeps up only by running 8 windows per
# stream at a time (4 s of audio) lags 6-9 s, and one that falls behind drops audio.
LAG_MARGIN = 3.0


@dataclass
class StreamResult:
    """What the server sent for one stream, and when."""

    events: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each event
    stopped_at: float = 0.0  # time.monotonic() when the last audio and the end were sent
    close_code: int | None = None

    @property
    def turns(self) -> list[Turn]:
        return [
            Turn(event["start"], event["end"], event["speaker"])
            for event in self.events
            if event["type"] == "turn"
        ]

    def last(self, kind: str) -> dict[str, Any] | None:
        return next((e for e in reversed(self.events) if e["type"] == kind), None)

    def steady_lag(self, window: float, latency: float) -> float:
        """The largest lag the status events told once the first window was whole and its
        frames committed: the audio received (and kept) that was not final yet, the latency
        included. Before that, the lag grows to a window and the latency by design."""
        return max(
            (
                event["lag"]
                for event in self.events
                if event["type"] == "status" and event["received"] >= window + latency + 2.0
            ),
            default=0.0,
        )

    def kept_up(self, window: float, latency: float) -> bool:
        """Whether the server kept up with this stream in real time: no audio dropped, and a
        steady lag of at most the latency and LAG_MARGIN."""
        end = self.last("summary")
        lag = self.steady_lag(window, latency)
        return end is not None and end["dropped"] == 0 and lag <= latency + LAG_MARGIN

    @property
    def end_wait(self) -> float:
        """Seconds from the end message to the summary: what the server still had to do."""
        ends = [at for e, at in zip(self.events, self.arrivals) if e["type"] == "summary"]
        return ends[0] - self.stopped_at if ends else float("nan")


async def stream_file(
    url: str,
    path: str | Path,
    speed: float = 1.0,
    block_seconds: float = 0.1,
    name: str | None = None,
    token: str | None = None,
) -> StreamResult:
    """Streams `path` (WAV, FLAC, OGG) to the server at `url` (ws://HOST:PORT/v1/stream) at
    `speed` times real time, in blocks of `block_seconds`, as 16-bit PCM where the file holds
    16-bit PCM (the same samples the file decodes to) and as 32-bit float otherwise; then ends
    the stream and gathers every message until the server closes the socket."""
    result = StreamResult()
    with sf.SoundFile(str(path)) as sound:
        as_int16 = sound.subtype == "PCM_16"
        start = {
            "type": "start",
            "sample_rate": sound.samplerate,
            "channels": sound.channels,
            "encoding": "pcm_s16le" if as_int16 else "pcm_f32le",
        }
        if name is not None:
            start["name"] = name
        headers = None if token is None else {"Authorization": f"Bearer {token}"}
        async with connect(url, additional_headers=headers, max_size=None) as socket:
            await socket.send(json.dumps(start))

            async def receive() -> None:
                with contextlib.suppress(ConnectionClosed):  # close_code tells how
                    while True:
                        result.events.append(json.loads(await socket.recv()))
                        result.arrivals.append(time.monotonic())

            receiving = asyncio.create_task(receive())
            frames = max(1, round(block_seconds * sound.samplerate))
            started = time.monotonic()
            sent = 0
            dtype = "int16" if as_int16 else "float32"
            for block in sound.blocks(frames, dtype=dtype, always_2d=True):
                sent += len(block)
                heard_at = started + sent / sound.samplerate / speed
                await asyncio.sleep(max(0.0, heard_at - time.monotonic()))
                await socket.send(block.astype(block.dtype.newbyteorder("<"), copy=False).tobytes())
            await socket.send(json.dumps({"type": "end"}))
            result.stopped_at = time.monotonic()
            await receiving
        result.close_code = socket.close_code
    return result
