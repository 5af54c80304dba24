"""The command-line flags that choose the models, where they come from, the device and the
latency: shared by every command that diarizes."""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import TYPE_CHECKING

from streamdiar.core.pyannote_models import ModelSource
from streamdiar.settings import BACKENDS, LATENCY_RANGE

if TYPE_CHECKING:
    from streamdiar.diarizer import Diarizer


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add(
        "--hf-token",
        metavar="TOKEN",
        help="Hugging Face token for --backend pyannote (default: $HF_TOKEN, else the "
        "`hf auth login` cache)",
    )
    add("--segmentation", type=Path, metavar="PATH", help="local segmentation-3.0 checkpoint")
    add("--embedding", type=Path, metavar="PATH", help="local WeSpeaker ResNet34 checkpoint")
    add(
        "--random-weights",
        action="store_true",
        help="untrained pyannote models, for tests and speed measurements (labels mean nothing)",
    )


def model_arguments(args: argparse.Namespace) -> list[str]:
    """The model flags of `args` as arguments again, for a child process."""
    arguments = ["--random-weights"] if args.random_weights else []
    for flag, value in (
        ("--hf-token", args.hf_token),
        ("--segmentation", args.segmentation),
        ("--embedding", args.embedding),
    ):
        if value is not None:
            arguments += [flag, str(value)]
    return arguments


def model_source(args: argparse.Namespace) -> ModelSource:
    return ModelSource(args.hf_token, args.segmentation, args.embedding, args.random_weights)


def diarizer_from_flags(args: argparse.Namespace) -> Diarizer:
    """The Diarizer that the diarization flags and --speakers of a live-audio command ask
    for (`live`, `serve`, `transcript`); imports torch."""
    from streamdiar.diarizer import Diarizer

    return Diarizer(
        args.backend,
        args.device,
        args.latency,
        model_source=model_source(args),
        speakers=args.speakers,
    )


def add_diarization_flags(parser: argparse.ArgumentParser) -> None:
    """--backend, --device (or --use-gpu), the model flags and --latency."""
    add = parser.add_argument
    add(
        "--backend",
        default=BACKENDS[0],
        help=f"diarization models: {', '.join(BACKENDS)} (default: {BACKENDS[0]})",
    )
    device = parser.add_mutually_exclusive_group()
    device.add_argument(
        "--device",
        help="auto, gpu (the best accelerator), cuda, mps or cpu (default: $STREAMDIAR_DEVICE, "
        "else gpu if $USE_GPU_DIARIZATION is 1, else auto)",
    )
    device.add_argument(
        "--use-gpu",
        dest="device",
        action="store_const",
        const="gpu",
        help="the best accelerator, CPU with a warning if there is none: --device gpu",
    )
    add_model_flags(parser)
    low, high = LATENCY_RANGE
    add(
        "--latency",
        type=float,
        default=2.0,
        metavar="S",
        help=f"seconds of audio heard past a moment before it is final, {low:g} to {high:g} "
        "(default: 2)",
    )
