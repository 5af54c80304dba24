"""Speakers named after enrolled people, told to people and programs as the names come."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streamdiar.core.voiceprints import Naming


class EventWriter(Protocol):
    """Where JSON events go: a JSON-lines file (`JsonlWriter`), a socket's outbox."""

    def write_event(self, event: dict[str, Any]) -> None: ...


class NamingAnnouncer:
    """Tells of each speaker named after an enrolled person, once, when called: a line for
    people (`note`) and, where JSON lines are written, an event `{"event": "named", "label":
    "SPEAKER_01", "speaker": "Alice", "time": 12.5}` (from `time` on, turns of the label carry
    the name). Called before each turn is written, it tells before the first named turn."""

    def __init__(
        self,
        namings: list[Naming],
        note: Callable[[str], None],
        jsonl: EventWriter | None = None,
        uri: str | None = None,
    ) -> None:
        self._namings = namings  # the stream's, growing as it runs
        self._note = note
        self._jsonl = jsonl
        self._uri = uri
        self._told = 0

    def __call__(self) -> None:
        for naming in self._namings[self._told :]:
            prefix = "" if self._uri is None else f"{self._uri}: "
            since = f"turns from {naming.time:.2f} s on"
            self._note(f"{prefix}{naming.label} is {naming.name} ({since})")
            if self._jsonl is not None:
                event: dict[str, Any] = {"event": "named"}
                if self._uri is not None:
                    event["uri"] = self._uri
                event.update(label=naming.label, speaker=naming.name, time=round(naming.time, 3))
                self._jsonl.write_event(event)
        self._told = len(self._namings)
