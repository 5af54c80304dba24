"""`streamdiar serve`: live diarization over WebSockets, and a page that streams a browser's
microphone to it.

Each connection to /stream is one live stream, diarized as `streamdiar live` diarizes a
microphone: a pipeline of its own (its own speakers) on the Diarizer's shared models, behind a
backlog of at most a few seconds of audio whose oldest blocks are dropped and counted when the
models cannot keep up. The models run the waiting windows of all streams as one batch.

The protocol (the README's "Serve" section has it with examples):
- connect to `ws://HOST:PORT/stream?sample_rate=16000&channels=1&encoding=pcm_s16le&name=NAME`
  (all optional: these are the defaults, and NAME defaults to stream-N; encoding pcm_s16le or
  pcm_f32le, little-endian, channels interleaved);
- send binary messages of samples, any number of whole frames each, then the text message
  `{"type": "stop"}`;
- receive text messages, one JSON event each: `ready` first; `turn` for each committed turn
  (the `diarize --jsonl` event); `named` when a speaker is named after an enrolled person;
  `status` every second (audio received and dropped, lag, who is speaking); after stop, the
  last turns, then `end` (the totals and each speaker's talk time), and the server closes the
  socket (code 1000). An `error` event comes before a close for bad parameters (1008), a
  malformed message (1003, 1007), a server at its stream limit (1013) or a failure (1011).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from streamdiar.cli.speakers_command import NamingAnnouncer
from streamdiar.core.types import Turn
from streamdiar.server import BACKLOG_SECONDS, DEFAULT_MAX_STREAMS
from streamdiar.session import build_live_diarizer
from streamdiar.settings import SettingsError, check_stream_format
from streamdiar.stream.backlog import AudioBacklog, CaptureStats
from streamdiar.stream.pushed import BlockConverter, converted_blocks
from streamdiar.stream.sinks import turn_event

if TYPE_CHECKING:
    from streamdiar.diarizer import Diarizer
    from streamdiar.stream.pipeline import StreamingDiarizer

STATIC = Path(__file__).parent / "static"
ENCODINGS = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}
STATUS_SECONDS = 1.0

# close codes (RFC 6455 and IANA's registry)
NORMAL, UNSUPPORTED, INVALID_DATA, POLICY, FAILED, TRY_LATER = 1000, 1003, 1007, 1008, 1011, 1013


class ProtocolError(Exception):
    """What a client did wrong, and the close code that says so."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StreamFormat:
    """What a client's binary messages hold, from the query string of its connection."""

    sample_rate: int
    channels: int
    encoding: str
    name: str

    @property
    def frame_bytes(self) -> int:
        return self.channels * ENCODINGS[self.encoding].itemsize

    @classmethod
    def from_query(cls, query: dict[str, str], default_name: str) -> StreamFormat:
        unknown = sorted(set(query) - {"sample_rate", "channels", "encoding", "name"})
        if unknown:
            raise ProtocolError(f"unknown parameter {unknown[0]!r}", POLICY)
        numbers = {}
        for key, default in (("sample_rate", 16000), ("channels", 1)):
            try:
                numbers[key] = int(query.get(key, default))
            except ValueError:
                message = f"{key} must be a whole number, got {query[key]!r}"
                raise ProtocolError(message, POLICY) from None
        try:
            check_stream_format(numbers["sample_rate"], numbers["channels"])
        except SettingsError as error:
            raise ProtocolError(str(error), POLICY) from None
        encoding = query.get("encoding", "pcm_s16le")
        if encoding not in ENCODINGS:
            raise ProtocolError(
                f"unknown encoding {encoding!r}: choose from {', '.join(ENCODINGS)}", POLICY
            )
        name = query.get("name", "").strip() or default_name
        return cls(numbers["sample_rate"], numbers["channels"], encoding, name)


class _Close:
    """The last item of a connection's outbox: close the socket with this code."""

    def __init__(self, code: int) -> None:
        self.code = code


class _Outbox:
    """Events for one client, in order, sent by one task (a socket takes one send at a time)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()

    def write_event(self, event: dict[str, Any]) -> None:  # as JsonlWriter, for NamingAnnouncer
        self.queue.put_nowait(event)

    def close(self, code: int) -> None:
        self.queue.put_nowait(_Close(code))


class SocketStream:
    """One client's stream: its backlog, its pipeline, and what it has done so far."""

    def __init__(
        self, stream_format: StreamFormat, pipeline: StreamingDiarizer, backlog_seconds: float
    ) -> None:
        self.format = stream_format
        self.pipeline = pipeline
        self.stats = CaptureStats()
        self.backlog = AudioBacklog(stream_format.sample_rate, backlog_seconds, self.stats)
        self.talk: dict[str, float] = {}  # speaker -> seconds of committed turns

    def put(self, data: bytes) -> None:
        """One binary message: whole frames of the stream's encoding."""
        if len(data) % self.format.frame_bytes:
            raise ProtocolError(
                f"a message of {len(data)} bytes does not hold whole frames of "
                f"{self.format.frame_bytes} bytes ({self.format.channels} channel(s) of "
                f"{self.format.encoding})",
                INVALID_DATA,
            )
        samples = np.frombuffer(data, ENCODINGS[self.format.encoding])
        self.backlog.put(samples.reshape(-1, self.format.channels))

    async def run(self, on_turn: Callable[[Turn], None]) -> None:
        """Diarizes the backlog's blocks until the stream is stopped and all are done."""
        convert = BlockConverter(self.format.sample_rate, self.format.channels)

        def count(turn: Turn) -> None:
            self.talk[turn.speaker] = self.talk.get(turn.speaker, 0.0) + turn.duration
            on_turn(turn)

        await self.pipeline.run(converted_blocks(self.backlog.blocks(), convert), count)

    def status(self) -> dict[str, Any]:
        kept = self.stats.captured_seconds - self.stats.dropped_seconds
        committed = self.pipeline.stats.committed_seconds
        return {
            "event": "status",
            "uri": self.format.name,
            "received": round(self.stats.captured_seconds, 3),
            "dropped": round(self.stats.dropped_seconds, 3),
            "committed": round(committed, 3),
            # audio received and kept that is not final yet: the latency plus any backlog
            "lag": round(max(0.0, kept - committed), 3),
            "speaking": self.pipeline.stitcher.open_speakers(),
        }

    def end(self) -> dict[str, Any]:
        return {
            "event": "end",
            "uri": self.format.name,
            "received": round(self.stats.captured_seconds, 3),
            "dropped": round(self.stats.dropped_seconds, 3),
            "speakers": {speaker: round(talk, 3) for speaker, talk in sorted(self.talk.items())},
        }


def _say(text: str) -> None:
    print(f"streamdiar: {text}", file=sys.stderr, flush=True)


class Server:
    """The streams of one Diarizer over WebSockets, at most `max_streams` at once."""

    def __init__(
        self,
        diarizer: Diarizer,
        max_streams: int = DEFAULT_MAX_STREAMS,
        backlog_seconds: float = BACKLOG_SECONDS,
        say: Callable[[str], None] = _say,
    ) -> None:
        self.diarizer = diarizer
        self.max_streams = max_streams
        self.backlog_seconds = backlog_seconds
        self.active = 0
        self.opened = 0  # streams opened so far, which numbers the unnamed ones
        self._say = say

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self._page),
                Route("/status", self._status),
                WebSocketRoute("/stream", self._stream),
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
            ]
        )

    async def _page(self, request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def _status(self, request: Request) -> JSONResponse:
        streams = {"streams": self.active, "max_streams": self.max_streams}
        return JSONResponse(self._settings() | streams)

    def _settings(self) -> dict[str, Any]:
        diarizer = self.diarizer
        return {"backend": diarizer.backend, "device": diarizer.device, "latency": diarizer.latency}

    async def _stream(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            stream_format = StreamFormat.from_query(
                dict(websocket.query_params), f"stream-{self.opened + 1}"
            )
            if self.active >= self.max_streams:
                raise ProtocolError(
                    f"the server runs its limit of {self.max_streams} streams: try again later",
                    TRY_LATER,
                )
        except ProtocolError as error:
            await websocket.send_json({"event": "error", "message": str(error)})
            await websocket.close(error.code)
            return
        self.active += 1
        self.opened += 1
        diarizer = self.diarizer
        pipeline = build_live_diarizer(diarizer.models, diarizer.latency, diarizer.namer())
        stream = SocketStream(stream_format, pipeline, self.backlog_seconds)
        self._say(
            f"{stream_format.name}: opened ({stream_format.sample_rate} Hz, "
            f"{stream_format.channels} ch, {stream_format.encoding}); {self.active} streams"
        )
        try:
            await _Connection(websocket, stream, self._settings(), self._say).run()
        finally:
            self.active -= 1
            self._say(
                f"{stream_format.name}: closed after {stream.stats.captured_seconds:.1f} s, "
                f"{stream.stats.dropped_seconds:.1f} s dropped, {len(stream.talk)} speakers"
            )


class _Connection:
    """The tasks of one client's socket: receiving, diarizing, telling the status, sending."""

    def __init__(
        self,
        websocket: WebSocket,
        stream: SocketStream,
        settings: dict[str, Any],
        say: Callable[[str], None],
    ) -> None:
        self.websocket = websocket
        self.stream = stream
        self.settings = settings
        self.say = say
        self.outbox = _Outbox()

    async def run(self) -> None:
        stream = self.stream
        self.outbox.write_event(
            {"event": "ready", "uri": stream.format.name, **self.settings,
             "window": stream.pipeline.window_duration, "step": stream.pipeline.window_step}
        )  # fmt: skip
        sending = asyncio.create_task(self._send())
        ticking = asyncio.create_task(self._tick())
        diarizing = asyncio.create_task(self._diarize(ticking))
        receiving = asyncio.create_task(self._receive(diarizing))
        tasks = (sending, ticking, diarizing, receiving)
        try:
            await asyncio.wait((sending, receiving), return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done() or receiving.result():  # not gone: the outbox ends with a close
                await sending
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _receive(self, diarizing: asyncio.Task) -> bool:
        """Feeds the backlog until the client goes (False) or breaks the protocol (True)."""
        stream = self.stream
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return False
                if message.get("bytes") is not None:
                    stream.put(message["bytes"])
                elif _is_stop(message.get("text")):
                    stream.backlog.close()  # what came before is diarized, then `end`
                else:
                    raise ProtocolError(
                        'text messages must be {"type": "stop"}; audio goes in binary messages',
                        UNSUPPORTED,
                    )
        except ProtocolError as error:
            diarizing.cancel()
            self.outbox.write_event({"event": "error", "message": str(error)})
            self.outbox.close(error.code)
            return True
        except WebSocketDisconnect:
            return False
        finally:
            stream.backlog.close()

    async def _diarize(self, ticking: asyncio.Task) -> None:
        outbox, stream = self.outbox, self.stream
        name = stream.format.name
        announce = NamingAnnouncer(stream.pipeline.stats.namings, self.say, outbox, name)

        def on_turn(turn: Turn) -> None:
            announce()
            outbox.write_event(turn_event(name, turn))

        try:
            await stream.run(on_turn)
        except Exception as error:  # a failure of this stream's pipeline ends this stream only
            self.say(f"{name}: error: {type(error).__name__}: {error}")
            outbox.write_event({"event": "error", "message": f"diarization failed: {error}"})
            outbox.close(FAILED)
            return
        finally:
            ticking.cancel()
        announce()
        outbox.write_event(stream.end())
        outbox.close(NORMAL)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self.outbox.write_event(self.stream.status())

    async def _send(self) -> None:
        try:
            while not isinstance(item := await self.outbox.queue.get(), _Close):
                await self.websocket.send_text(json.dumps(item, ensure_ascii=False))
            await self.websocket.close(item.code)
        except WebSocketDisconnect:  # the client went away: nobody to tell
            pass


def _is_stop(text: str | None) -> bool:
    try:
        message = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("type") == "stop"
