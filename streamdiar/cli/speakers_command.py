"""`streamdiar enroll` and `streamdiar speakers`: the people whose voices a run may name, and
`--speakers DB`, the flag that names them in `diarize`, `live` and `transcript`."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from streamdiar.speaker_store import (
    EnrolmentError,
    SpeakerStore,
    SpeakerStoreError,
    check_name,
    default_store_path,
)
from streamdiar.stream.sources import probe

STORE_HELP = (
    "the speaker store, an SQLite file (default: $XDG_DATA_HOME/streamdiar/speakers.sqlite, "
    "else ~/.local/share/streamdiar/speakers.sqlite)"
)


def add_speakers_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speakers",
        type=Path,
        metavar="DB",
        help="name speakers who match a person enrolled in this speaker store (streamdiar "
        "enroll) after them, instead of SPEAKER_NN",
    )


def add_speakers_commands(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    enroll = commands.add_parser(
        "enroll",
        parents=[common],
        help="store voiceprints of a person, so that runs with --speakers name them",
        description="Store voiceprints of NAME from the speech in AUDIO (one per 8 s of "
        "speech) in the speaker store, with the default backend's models. Voiceprints are "
        "biometric data: they stay in that file, on this machine, until `streamdiar speakers "
        "remove` deletes them. Enrolling a name already in the store adds voiceprints to it.",
    )
    enroll.set_defaults(run=_enroll)
    add = enroll.add_argument
    add("name", metavar="NAME", help="the person's name, as turns will carry it")
    add("audio", nargs="+", type=Path, metavar="AUDIO", help="recordings of the person")
    add("--db", type=Path, metavar="FILE", help=STORE_HELP)
    add(
        "--rttm",
        type=Path,
        metavar="REF.rttm",
        help="only the turns of --speaker in this RTTM (uri = the audio file's stem)",
    )
    add("--speaker", metavar="LABEL", help="the person's label in --rttm")
    add("--replace", action="store_true", help="drop the name's earlier voiceprints first")
    add("--device", help="auto, gpu, cuda, mps or cpu (as for diarize)")

    speakers = commands.add_parser(
        "speakers",
        parents=[common],
        help="list the enrolled people, or remove one (their voiceprints are deleted)",
        description="The people of a speaker store.",
    )
    actions = speakers.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="each person and voiceprints")
    listing.set_defaults(run=_list)
    listing.add_argument("--db", type=Path, metavar="FILE", help=STORE_HELP)
    removal = actions.add_parser(
        "remove", parents=[common], help="delete every voiceprint of NAME from the store"
    )
    removal.set_defaults(run=_remove)
    removal.add_argument("name", metavar="NAME")
    removal.add_argument("--db", type=Path, metavar="FILE", help=STORE_HELP)


def _store_path(args: argparse.Namespace) -> Path:
    return args.db if args.db is not None else default_store_path()


def _enroll(args: argparse.Namespace) -> int:
    name = check_name(args.name)
    if (args.rttm is None) != (args.speaker is None):
        raise EnrolmentError("--rttm and --speaker go together")
    inputs = [probe(path) for path in args.audio]  # every file, before any work
    # imported here: torch takes seconds to import, which --help and input errors skip
    from streamdiar.enrolment import (
        ENROLMENT_BACKEND,
        cut,
        read_samples,
        reference_spans,
        voiceprint_model,
        voiceprints,
    )
    from streamdiar.session import load_backend

    spans = [
        reference_spans(args.rttm, info.path.stem, args.speaker) if args.rttm else None
        for info in inputs
    ]
    store_path = _store_path(args)
    model = voiceprint_model(ENROLMENT_BACKEND)
    if store_path.exists():  # a store of another model is refused before any work
        with SpeakerStore(store_path) as store:
            store.check_model(model)
    backend, warning = load_backend(ENROLMENT_BACKEND, args.device)
    if warning:
        warnings.warn(warning, stacklevel=1)
    found = []
    for info, own in zip(inputs, spans):
        samples = read_samples(info.path)
        vectors = voiceprints(backend, samples if own is None else cut(samples, own))
        if len(vectors) == 0:
            raise EnrolmentError(f"no speech of {name} found in {info.path}: nothing enrolled")
        found.append((info.path, vectors))
    with SpeakerStore(store_path, create=True) as store:
        if args.replace:
            store.remove(name)
        for path, vectors in found:
            store.add(name, model, vectors, str(path))
        total = sum(p.voiceprints for p in store.people() if p.name == name)
    added = sum(len(v) for _, v in found)
    print(f"{name}: {added} voiceprints added ({total} in all) to {store.path}", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    with SpeakerStore(_store_path(args)) as store:
        people = store.people()
    for person in people:
        print(f"{person.name}\t{person.voiceprints} voiceprints\t{person.model}")
    if not people:
        print(f"nobody is enrolled in {store.path}", file=sys.stderr)
    return 0


def _remove(args: argparse.Namespace) -> int:
    with SpeakerStore(_store_path(args)) as store:
        removed = store.remove(args.name)
    if removed == 0:
        raise SpeakerStoreError(f"nobody named {args.name!r} is enrolled in {store.path}")
    print(f"{args.name}: {removed} voiceprints deleted from {store.path}", file=sys.stderr)
    return 0
