"""`streamdiar serve`: live diarization for many clients over WebSockets, and a page that
streams a browser's microphone to it (streamdiar/server/).

Nothing here imports torch or the server stack at module level: `streamdiar.cli` imports this
module, and `streamdiar --help` and errors in the arguments should not wait for them.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from streamdiar.cli.model_flags import add_diarization_flags, diarizer_from_flags
from streamdiar.cli.speakers_command import add_speakers_flag
from streamdiar.errors import UserError
from streamdiar.server import BACKLOG_SECONDS, DEFAULT_MAX_STREAMS
from streamdiar.settings import check_backend, check_settings

DEFAULT_PORT = 8765


def _say(text: str) -> None:
    print(f"streamdiar: {text}", file=sys.stderr, flush=True)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) and listening; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    sock.listen(128)
    return sock


def _serve(args: argparse.Namespace) -> int:
    check_backend(args.backend)
    check_settings(args.latency, None, None, 1)
    if args.max_streams < 1:
        raise UserError(f"--max-streams must be at least 1, got {args.max_streams}")
    if not args.backlog > 0:
        raise UserError(f"--backlog must be positive, got {args.backlog:g}")
    if args.token is not None and not args.token:
        raise UserError("--token must not be empty")
    if args.record is not None:
        try:
            args.record.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot record into {args.record}: {error.strerror}") from None
    sock = listening_socket(args.host, args.port)  # a port in use is reported before models load
    # imported here: torch and the server stack take seconds to import
    import uvicorn
    from streamdiar.server.app import Server

    diarizer = diarizer_from_flags(args)
    _say(f"using device {diarizer.device}")
    server = Server(
        diarizer, args.max_streams, args.backlog, token=args.token, record_dir=args.record
    )
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    websocket = f"ws://{shown}:{port}/v1/stream"
    _say(f"serving on http://{shown}:{port}/ (WebSocket: {websocket}); Ctrl-C stops")
    config = uvicorn.Config(
        server.app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=5
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def add_serve_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    """The `serve` subcommand, added to the CLI's `commands`."""
    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="live diarization over WebSockets, with a page that streams a browser's microphone",
        description="Serve live diarization: each WebSocket connection to /v1/stream is one "
        "live stream (a start message, PCM in binary messages, an end message; JSON messages "
        "back); http://HOST:PORT/ is a page that streams the browser's microphone or a file "
        "and shows who speaks. Ctrl-C or SIGTERM stops.",
    )
    serve.set_defaults(run=_serve)
    add = serve.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    add(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})",
    )
    add(
        "--max-streams",
        type=int,
        default=DEFAULT_MAX_STREAMS,
        metavar="N",
        help="streams at once; more are refused with close code 1013 "
        f"(default: {DEFAULT_MAX_STREAMS})",
    )
    add(
        "--backlog",
        type=float,
        default=BACKLOG_SECONDS,
        metavar="S",
        help="audio each stream may hold waiting for the models; older audio is dropped and "
        f"counted (default: {BACKLOG_SECONDS:g})",
    )
    add(
        "--token",
        metavar="T",
        help="require this token of clients, as ?token=T or an 'Authorization: Bearer T' header "
        "(default: none required)",
    )
    add(
        "--record",
        type=Path,
        metavar="DIR",
        help="keep each stream's received audio (WAV) and turns (RTTM, JSON lines) in DIR; "
        "without it nothing is written to disk",
    )
    add_diarization_flags(serve)
    add_speakers_flag(serve)
