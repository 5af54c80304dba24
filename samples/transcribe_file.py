"""Who said what in a long recording: streamdiar's Python API beside Whisper.

The recording is diarized as it is read, block by block, so an hour takes the memory of a few
seconds; then each piece of the transcript gets the speaker heard over most of it, and a piece
whose words change speaker is split there.

    python samples/transcribe_file.py talk.wav --whisper talk.json   # Whisper output you have
    python samples/transcribe_file.py talk.wav --model small          # faster-whisper, here

--whisper takes whisper.cpp JSON, openai-whisper / faster-whisper / WhisperX JSON, JSON lines,
SRT or WebVTT. --model needs `pip install faster-whisper` and transcribes on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from streamdiar import Diarizer, StreamdiarError, label_transcript, to_rttm


def transcribe(audio: Path, model: str) -> Iterable[Any]:
    """faster-whisper's segments of `audio`, with word times so that each word is labelled.
    They are a generator: the audio is transcribed as label_transcript reads them."""
    from faster_whisper import WhisperModel

    segments, _ = WhisperModel(model).transcribe(str(audio), word_timestamps=True)
    return segments


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", type=Path)
    whisper = parser.add_mutually_exclusive_group(required=True)
    whisper.add_argument("--whisper", type=Path, help="Whisper output for the audio")
    whisper.add_argument("--model", help="a faster-whisper model: tiny, base, small, ...")
    parser.add_argument("--rttm", type=Path, help="also write the turns to this RTTM file")
    parser.add_argument("--device", help="where the models run: auto, gpu, cuda, mps or cpu")
    args = parser.parse_args()

    try:
        turns = Diarizer(device=args.device).diarize(args.audio)
        if args.rttm is not None:
            args.rttm.write_text(to_rttm(turns, args.audio.stem))
        transcript = args.whisper or transcribe(args.audio, args.model)
        for piece in label_transcript(turns, transcript):
            print(f"[{piece.start:7.2f} - {piece.end:7.2f}] {piece.speaker}: {piece.text}")
    except StreamdiarError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError:
        print("error: --model needs faster-whisper: pip install faster-whisper", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
