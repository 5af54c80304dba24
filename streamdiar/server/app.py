"""`streamdiar serve`: live diarization over WebSockets, and a page that streams a browser's
microphone to it.

Each WebSocket connection to /v1/stream is one live stream, diarized as `streamdiar live`
diarizes a microphone: a pipeline of its own (its own speakers) on the Diarizer's shared
models, which run the waiting windows of all streams as one batch. Each stream has a backlog of
a few seconds of audio: a client that sends faster than real time waits for it (its socket is
not read meanwhile), and a stream that falls behind the wall clock by more than the backlog
loses its oldest audio, counted in its status.

The protocol (the README's "Serve" section has it with examples):
- with `--token T`, the upgrade request carries `?token=T` or `Authorization: Bearer T`, else it
  is refused with HTTP 403;
- the client sends a text message `{"type": "start", "sample_rate": 16000, "encoding":
  "pcm_s16le"}` (`encoding` pcm_s16le or pcm_f32le, little-endian; optional `channels`,
  interleaved, default 1; optional `name`), then binary messages of samples (whole frames, at
  most MAX_FRAME_BYTES each), then `{"type": "end"}`;
- the server sends text messages, one JSON object each, `type` first: `ready` after start;
  `turn` for each committed turn (the fields of `diarize --jsonl`); `named` when a speaker is
  named after an enrolled person; `status` every second (audio received and dropped, lag, who is
  speaking); after end, the last turns, then `summary`, and a normal close (1000). An `error`
  with a one-line `message` comes before any other close: bad input (1003, 1007, 1008, 1009), a
  full server (1013) or a failure (1011); the close reason repeats the message.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
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

from streamdiar.core.types import Turn
from streamdiar.server import BACKLOG_SECONDS, DEFAULT_MAX_STREAMS
from streamdiar.server.recording import StreamRecording
from streamdiar.session import build_live_diarizer
from streamdiar.settings import SettingsError, check_stream_format
from streamdiar.stream.backlog import AudioBacklog, CaptureStats
from streamdiar.stream.naming import NamingAnnouncer
from streamdiar.stream.pushed import BlockConverter, converted_blocks
from streamdiar.stream.sinks import turn_event

if TYPE_CHECKING:
    from streamdiar.diarizer import Diarizer
    from streamdiar.stream.pipeline import StreamingDiarizer

STATIC = Path(__file__).parent / "static"
ENCODINGS = {"pcm_s16le": np.dtype("<i2"), "pcm_f32le": np.dtype("<f4")}
STATUS_SECONDS = 1.0
MAX_FRAME_BYTES = 1 << 20  # a binary message: 16 s of 16 kHz mono float samples
START_FIELDS = {"type", "sample_rate", "encoding", "channels", "name"}
MAX_REASON_BYTES = 123  # a close frame's reason (RFC 6455)

# close codes (RFC 6455 and IANA's registry)
NORMAL, UNSUPPORTED, INVALID_DATA, POLICY, TOO_BIG, FAILED, TRY_LATER = (
    1000, 1003, 1007, 1008, 1009, 1011, 1013
)  # fmt: skip


class ProtocolError(Exception):
    """What a client did wrong, and the close code that says so."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class StreamFormat:
    """What a client's binary messages hold, from its start message."""

    sample_rate: int
    channels: int
    encoding: str
    name: str

    @property
    def frame_bytes(self) -> int:
        return self.channels * ENCODINGS[self.encoding].itemsize

    @classmethod
    def from_start(cls, start: dict[str, Any], default_name: str) -> StreamFormat:
        """The format of a start message (its `type` already checked)."""
        unknown = sorted(set(start) - START_FIELDS)
        if unknown:
            raise ProtocolError(f"unknown field {unknown[0]!r} in the start message", POLICY)
        if "sample_rate" not in start:
            raise ProtocolError("the start message needs a sample_rate", POLICY)
        sample_rate, channels = start["sample_rate"], start.get("channels", 1)
        try:
            check_stream_format(sample_rate, channels)
        except SettingsError as error:
            raise ProtocolError(str(error), POLICY) from None
        encoding = start.get("encoding", "pcm_s16le")
        if encoding not in ENCODINGS:
            raise ProtocolError(
                f"unknown encoding {encoding!r}: choose from {', '.join(ENCODINGS)}", POLICY
            )
        name = start.get("name", default_name)
        if not isinstance(name, str) or not name.strip():
            raise ProtocolError("name must be a non-empty string", POLICY)
        return cls(sample_rate, channels, encoding, name.strip())


class _Close:
    """The last item of a connection's outbox: close the socket with this code and reason."""

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason


class _Outbox:
    """Messages for one client, in order, sent by one task (a socket takes one send at a time).
    Events come as JSON lines write them (`event` first) and leave with `type` first."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()

    def write_event(self, event: dict[str, Any]) -> None:  # an EventWriter
        kind = event.pop("event")
        self.queue.put_nowait({"type": kind, **event})

    def fail(self, error: ProtocolError) -> None:
        """An error message, then a close that repeats it."""
        self.write_event({"event": "error", "message": str(error)})
        self.close(error.code, str(error))

    def close(self, code: int, reason: str = "") -> None:
        self.queue.put_nowait(_Close(code, reason))


def _close_reason(text: str) -> str:
    """`text` cut to fit a close frame, on a character boundary."""
    return text.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", "ignore")


class SocketStream:
    """One client's stream: its backlog, its pipeline, and what it has done so far."""

    def __init__(
        self,
        stream_format: StreamFormat,
        pipeline: StreamingDiarizer,
        backlog_seconds: float,
        recording: StreamRecording | None = None,
    ) -> None:
        self.format = stream_format
        self.pipeline = pipeline
        self.stats = CaptureStats()
        self.backlog = AudioBacklog(stream_format.sample_rate, backlog_seconds, self.stats)
        self.recording = recording
        self.started = time.monotonic()
        self.talk: dict[str, float] = {}  # speaker -> seconds of committed turns
        self.turns = 0

    async def put(self, data: bytes) -> None:
        """One binary message: whole frames of the stream's encoding. Waits while the stream is
        ahead of real time and its backlog is full."""
        if len(data) > MAX_FRAME_BYTES:
            raise ProtocolError(
                f"a binary message of {len(data)} bytes is over the limit of "
                f"{MAX_FRAME_BYTES} bytes",
                TOO_BIG,
            )
        if len(data) % self.format.frame_bytes:
            raise ProtocolError(
                f"a message of {len(data)} bytes does not hold whole frames of "
                f"{self.format.frame_bytes} bytes ({self.format.channels} channel(s) of "
                f"{self.format.encoding})",
                INVALID_DATA,
            )
        samples = np.frombuffer(data, ENCODINGS[self.format.encoding])
        frames = samples.reshape(-1, self.format.channels)
        if self.recording is not None:
            self.recording.write_audio(frames)
        await self.backlog.put_paced(frames, lambda: time.monotonic() - self.started)

    async def run(self, on_turn: Callable[[Turn], None]) -> None:
        """Diarizes the backlog's blocks until the stream has ended and all are done."""
        convert = BlockConverter(self.format.sample_rate, self.format.channels)

        def count(turn: Turn) -> None:
            self.talk[turn.speaker] = self.talk.get(turn.speaker, 0.0) + turn.duration
            self.turns += 1
            if self.recording is not None:
                self.recording.write_turn(turn)
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

    def summary(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "uri": self.format.name,
            "received": round(self.stats.captured_seconds, 3),
            "dropped": round(self.stats.dropped_seconds, 3),
            "turns": self.turns,
            "speakers": {speaker: round(talk, 3) for speaker, talk in sorted(self.talk.items())},
        }


def _say(text: str) -> None:
    print(f"streamdiar: {text}", file=sys.stderr, flush=True)


class Server:
    """The streams of one Diarizer over WebSockets, at most `max_streams` at once; with a
    `token`, only for clients that show it; with a `record_dir`, each stream's audio and turns
    are kept there (nothing is written otherwise)."""

    def __init__(
        self,
        diarizer: Diarizer,
        max_streams: int = DEFAULT_MAX_STREAMS,
        backlog_seconds: float = BACKLOG_SECONDS,
        say: Callable[[str], None] = _say,
        token: str | None = None,
        record_dir: Path | None = None,
    ) -> None:
        self.diarizer = diarizer
        self.max_streams = max_streams
        self.backlog_seconds = backlog_seconds
        self.token = token
        self.record_dir = record_dir
        self.active = 0
        self.opened = 0  # streams opened so far, which numbers the unnamed ones
        self._say = say

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/", self._page),
                Route("/status", self._status),
                WebSocketRoute("/v1/stream", self._stream),
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

    def _authorized(self, websocket: WebSocket) -> bool:
        if self.token is None:
            return True
        header = websocket.headers.get("authorization", "")
        shown = websocket.query_params.get("token") or header.removeprefix("Bearer ").strip()
        return hmac.compare_digest(shown.encode(), self.token.encode())

    async def _stream(self, websocket: WebSocket) -> None:
        if not self._authorized(websocket):
            self._say("refused a stream without the right token")
            await websocket.close(POLICY, "a valid token is required")  # before accept: HTTP 403
            return
        await websocket.accept()
        if self.active >= self.max_streams:
            message = f"the server is full: {self.max_streams} streams at most; try again later"
            await _refuse(websocket, ProtocolError(message, TRY_LATER))
            return
        self.active += 1
        self.opened += 1
        try:
            await self._run_stream(websocket, f"stream-{self.opened}")
        finally:
            self.active -= 1

    async def _run_stream(self, websocket: WebSocket, default_name: str) -> None:
        try:
            stream_format = StreamFormat.from_start(await _start_message(websocket), default_name)
        except ProtocolError as error:
            self._say(f"{default_name}: refused: {error}")
            await _refuse(websocket, error)
            return
        except WebSocketDisconnect:
            return
        diarizer = self.diarizer
        pipeline = build_live_diarizer(diarizer.models, diarizer.latency, diarizer.people)
        recording = None
        if self.record_dir is not None:
            recording = StreamRecording.open(self.record_dir, default_name, stream_format)
        stream = SocketStream(stream_format, pipeline, self.backlog_seconds, recording)
        self._say(
            f"{stream_format.name}: started ({stream_format.sample_rate} Hz, "
            f"{stream_format.channels} ch, {stream_format.encoding}); {self.active} streams"
        )
        try:
            await _Connection(websocket, stream, self._settings(), self._say).run()
        finally:
            if recording is not None:
                recording.close()
            self._say(
                f"{stream_format.name}: closed after {stream.stats.captured_seconds:.1f} s, "
                f"{stream.stats.dropped_seconds:.1f} s dropped, {len(stream.talk)} speakers"
            )


async def _refuse(websocket: WebSocket, error: ProtocolError) -> None:
    """An error message and a close, to a client whose stream never started."""
    try:
        await websocket.send_text(json.dumps({"type": "error", "message": str(error)}))
        await websocket.close(error.code, _close_reason(str(error)))
    except WebSocketDisconnect:
        pass


def _json_message(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProtocolError(f"a text message is not JSON: {error}", INVALID_DATA) from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError('a text message must be a JSON object with a "type"', INVALID_DATA)
    return message


async def _start_message(websocket: WebSocket) -> dict[str, Any]:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    if message.get("text") is None:
        raise ProtocolError('binary audio before the {"type": "start"} message', POLICY)
    start = _json_message(message["text"])
    if start["type"] != "start":
        raise ProtocolError(
            f'the first message must be {{"type": "start"}}, got type {start["type"]!r}', POLICY
        )
    return start


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
        """Feeds the backlog until the client ends the stream or breaks the protocol (True),
        or goes away (False)."""
        stream = self.stream
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return False
                if message.get("bytes") is not None:
                    await stream.put(message["bytes"])
                    continue
                kind = _json_message(message["text"])["type"]
                if kind == "end":
                    return True  # what came before is diarized, then the summary
                raise ProtocolError(
                    f'unknown message type {kind!r}: after start, only binary audio and '
                    '{"type": "end"}',
                    UNSUPPORTED,
                )
        except ProtocolError as error:
            diarizing.cancel()
            self.say(f"{stream.format.name}: ended: {error}")
            self.outbox.fail(error)
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
            outbox.fail(ProtocolError(f"diarization failed: {error}", FAILED))
            return
        finally:
            ticking.cancel()
        announce()
        outbox.write_event(stream.summary())
        outbox.close(NORMAL)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self.outbox.write_event(self.stream.status())

    async def _send(self) -> None:
        try:
            while not isinstance(item := await self.outbox.queue.get(), _Close):
                await self.websocket.send_text(json.dumps(item, ensure_ascii=False))
            await self.websocket.close(item.code, _close_reason(item.reason))
        except WebSocketDisconnect:  # the client went away: nobody to tell
            pass
