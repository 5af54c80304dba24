"""Streaming speaker diarization that keeps pace with transcription.

    from streamdiar import Diarizer

    diarizer = Diarizer()  # the models load once
    for turn in diarizer.diarize("meeting.wav"):
        print(f"{turn.start:.2f} {turn.end:.2f} {turn.speaker}")

Audio as it comes: `diarizer.session()` takes blocks from any thread (`push`, then `close`),
`async for turn in diarizer.stream(source)` serves async code. `label_transcript` gives Whisper
output its speakers; `to_rttm` and `to_annotation` hand turns to other tools. Every error a
caller can fix is a StreamdiarError.

The names below load on first use, so that `import streamdiar` (and the command line's
`--help`) does not wait for torch.
"""

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Read by pyannote.audio and torch when they are first imported: pyannote.audio sends
# telemetry unless told not to; MPS runs the ops it lacks on CPU only if asked.
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
if sys.platform == "darwin":
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")

_MODULES = {  # public name -> the module that defines it
    "Diarizer": "streamdiar.diarizer",
    "Session": "streamdiar.pushed_session",
    "TurnStream": "streamdiar.turn_stream",
    "Turn": "streamdiar.core.types",
    "ModelSource": "streamdiar.core.pyannote_models",
    "to_rttm": "streamdiar.turns",
    "to_annotation": "streamdiar.turns",
    "label_transcript": "streamdiar.transcript.align",
    "Segment": "streamdiar.transcript.types",
    "Word": "streamdiar.transcript.types",
    "LabelledSegment": "streamdiar.transcript.types",
    "LabelledWord": "streamdiar.transcript.types",
    "StreamdiarError": "streamdiar.errors",
    "SessionClosedError": "streamdiar.errors",
    "SettingsError": "streamdiar.settings",
    "AudioError": "streamdiar.stream.sources",
    "TranscriptError": "streamdiar.transcript.readers",
}

__all__ = [
    "AudioError",
    "Diarizer",
    "LabelledSegment",
    "LabelledWord",
    "ModelSource",
    "Segment",
    "Session",
    "SessionClosedError",
    "SettingsError",
    "StreamdiarError",
    "TranscriptError",
    "Turn",
    "TurnStream",
    "Word",
    "label_transcript",
    "to_annotation",
    "to_rttm",
]

if TYPE_CHECKING:
    from streamdiar.core.pyannote_models import ModelSource
    from streamdiar.core.types import Turn
    from streamdiar.diarizer import Diarizer
    from streamdiar.errors import SessionClosedError, StreamdiarError
    from streamdiar.pushed_session import Session
    from streamdiar.settings import SettingsError
    from streamdiar.stream.sources import AudioError
    from streamdiar.transcript.align import label_transcript
    from streamdiar.transcript.readers import TranscriptError
    from streamdiar.transcript.types import LabelledSegment, LabelledWord, Segment, Word
    from streamdiar.turn_stream import TurnStream
    from streamdiar.turns import to_annotation, to_rttm


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'streamdiar' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
