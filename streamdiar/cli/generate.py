"""`streamdiar generate`: a test conversation of any length with its reference RTTM."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamdiar.errors import UserError
from streamdiar.synthetic import VOICES, SynthesisError, generate_conversation


def _absence(text: str) -> tuple[float, float]:
    try:
        start, end = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:END in seconds, got {text!r}") from None
    if not 0 <= start < end:
        raise argparse.ArgumentTypeError(f"expected 0 <= START < END, got {text!r}")
    return start, end


def _generate(args: argparse.Namespace) -> int:
    if not args.seconds > 0:
        raise UserError(f"--seconds must be positive, got {args.seconds:g}")
    if not 1 <= args.speakers <= len(VOICES):
        raise UserError(f"--speakers must be between 1 and {len(VOICES)}, got {args.speakers}")
    if args.audio.suffix.lower() not in (".wav", ".flac"):
        raise UserError(f"{args.audio}: write a .wav or .flac file")
    rttm = args.rttm or args.audio.with_suffix(".rttm")
    try:
        turns = generate_conversation(
            args.audio, rttm, args.seconds, args.speakers, args.seed, args.absent
        )
    except (OSError, SynthesisError) as error:
        raise UserError(str(error)) from error
    print(f"{args.audio}: {args.seconds:g} s, {args.speakers} voices, {turns} turns in {rttm}")
    return 0


def add_generate_command(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    generate = commands.add_parser(
        "generate",
        parents=[common],
        help="a test conversation of any length with its reference RTTM (needs espeak-ng)",
        description="Writes a conversation of espeak-ng voices taking turns, and its turns as a "
        "reference RTTM: test audio of any length whose answer is known.",
    )
    generate.set_defaults(run=_generate)
    add = generate.add_argument
    add("audio", type=Path, metavar="OUT.wav", help="audio to write (.wav or .flac, 16 kHz mono)")
    add("--rttm", type=Path, metavar="OUT.rttm", help="reference turns (default: beside the audio)")
    add("--seconds", type=float, default=300.0, metavar="S", help="duration (default: 300)")
    add("--speakers", type=int, default=4, metavar="N", help=f"voices, 1-{len(VOICES)} (default: 4)")
    add("--seed", type=int, default=0, help="the same seed gives the same files (default: 0)")
    add(
        "--absent",
        type=_absence,
        metavar="START:END",
        help="seconds during which the last speaker says nothing, then comes back",
    )
