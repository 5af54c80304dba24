"""The terminal view of `streamdiar live`: who speaks now, the last turns (and with --transcribe
the last labelled lines of text), elapsed time, the lag of diarization behind capture and the
audio lost, redrawn four times a second. When stdout is not a terminal, turns and labelled text
are printed as lines and the status every few seconds instead."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamdiar.core.types import Turn
from streamdiar.stream.microphone import Capture
from streamdiar.stream.pipeline import StreamingDiarizer
from streamdiar.stream.sinks import TimelinePrinter
from streamdiar.transcript.live import LiveTranscription
from streamdiar.transcript.types import LabelledSegment

REFRESH_SECONDS = 0.25


class LiveView:
    """Shows a running live session; also a turn writer (`write`) for the turns it lists."""

    def __init__(
        self,
        capture: Capture,
        diarizer: StreamingDiarizer,
        console: Console | None = None,
        last_turns: int = 8,
        plain_status_seconds: float = 5.0,
        transcription: LiveTranscription | None = None,
        last_lines: int = 6,
    ) -> None:
        self._capture = capture
        self._diarizer = diarizer
        self._transcription = transcription
        self._console = console if console is not None else Console()
        self._turns: deque[Turn] = deque(maxlen=last_turns)
        self._lines: deque[LabelledSegment] = deque(maxlen=last_lines)
        self._printer = None if self._console.is_terminal else TimelinePrinter(self._console)
        self._plain_status_seconds = plain_status_seconds

    def write(self, uri: str, turn: Turn) -> None:
        if self._printer is not None:
            self._printer.write(uri, turn)
        else:
            self._turns.append(turn)

    def write_segment(self, segment: LabelledSegment) -> None:
        """A labelled piece of transcript."""
        if self._printer is not None:
            self._console.print(
                f"{segment.start:7.2f} → {segment.end:6.2f}  {segment.speaker}: {segment.text}",
                soft_wrap=True,
                markup=False,
                highlight=False,
            )
        else:
            self._lines.append(segment)

    def status(self) -> str:
        capture = self._capture.stats
        started = self._capture.started_at
        elapsed = 0.0 if started is None else time.monotonic() - started
        # audio captured and kept that is not final yet: the latency plus any backlog
        kept = capture.captured_seconds - capture.dropped_seconds
        lag = max(0.0, kept - self._diarizer.stats.committed_seconds)
        line = (
            f"elapsed {elapsed:.1f} s, captured {capture.captured_seconds:.1f} s, "
            f"lag {lag:.1f} s (latency {self._diarizer.stitcher.latency:g} s), "
            f"{capture.describe_losses()}"
        )
        if self._transcription is not None:
            line += f"; {self._transcription.describe()}"
        return line

    def render(self) -> RenderableType:
        speaking = self._diarizer.stitcher.open_speakers()
        now = Text.assemble(
            "speaking: ", (", ".join(speaking) if speaking else "nobody", "bold green")
        )
        turns = Table(box=None, show_header=True, header_style="bold")
        turns.add_column("start", justify="right")
        turns.add_column("end", justify="right")
        turns.add_column("speaker")
        for turn in self._turns:
            turns.add_row(f"{turn.start:.2f}", f"{turn.end:.2f}", turn.speaker)
        lines = [
            Text.assemble((f"{segment.speaker}: ", "bold"), segment.text)
            for segment in self._lines
        ]
        return Group(now, turns, *lines, Text(self.status(), style="dim"))

    async def run(self) -> None:
        """Keeps the view up to date until cancelled."""
        if self._printer is not None:
            while True:
                await asyncio.sleep(self._plain_status_seconds)
                self._console.print(Text(self.status()), soft_wrap=True)
        with Live(self.render(), console=self._console, auto_refresh=False) as live:
            try:
                while True:
                    await asyncio.sleep(REFRESH_SECONDS)
                    live.update(self.render(), refresh=True)
            finally:
                live.update(self.render(), refresh=True)
