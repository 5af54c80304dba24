"""The files of a batch: audio named on the command line, found in folders (recursively) or by
globs, or listed in a manifest (CSV or JSON lines) that may give each file a Whisper transcript
and a uri.

Files are checked by the workers, not here: in an archive of thousands, a missing or broken
file is one failed row, not the end of the job. What is checked here is what no run can use:
an input that names nothing, a manifest that cannot be read, two files that would write the
same outputs.
"""

from __future__ import annotations

import csv
import glob
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from streamdiar.errors import StreamdiarError
from streamdiar.text_files import TextFileError, read_text_file

# what a folder is searched for (any file named on the command line is taken as it is)
AUDIO_SUFFIXES = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .aac .wma .aif .aiff .au .caf .amr .webm "
    ".mp4 .mka .mkv .3gp".split()
)
MANIFEST_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MANIFEST_FIELDS = ("path", "transcript", "uri")


class BatchInputError(StreamdiarError):
    """An input names nothing, a manifest is malformed, or two files would share outputs."""


@dataclass(frozen=True)
class BatchFile:
    """One audio file of a batch and where its outputs go."""

    path: Path  # absolute
    uri: str  # names the file in its RTTM and JSON lines, and names its outputs
    folder: PurePath  # of its outputs, relative to the batch's output folder
    transcript: Path | None = None  # absolute; a Whisper transcript to label with speakers
    size: int = 0  # bytes (0 for a file that is not there): what "largest first" sorts by


def collect_files(inputs: Sequence[str]) -> list[BatchFile]:
    """Every file the inputs name, each once (the first time it is named), largest first.

    An input is a manifest (by its suffix: .csv, .jsonl, .ndjson), an audio file, a folder
    (its audio files, recursively, keep their subfolders in the outputs) or a glob. Raises
    BatchInputError for an input that names nothing, a malformed manifest, or two files whose
    outputs would be the same.
    """
    files: dict[Path, BatchFile] = {}
    for text in inputs:
        for found in _named(text):
            files.setdefault(found.path, found)
    listed = list(files.values())
    _check_distinct(listed)
    return sorted(listed, key=lambda f: (-f.size, str(f.path)))


def _named(text: str) -> Iterator[BatchFile]:
    path = Path(text)
    if path.suffix.lower() in MANIFEST_FORMATS and path.is_file():
        yield from read_manifest(path)
    elif path.is_dir():
        yield from _folder(path)
    elif path.exists():
        yield _file(path, PurePath())
    elif glob.has_magic(text):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise BatchInputError(f"no file matches {text}")
        for match in matches:
            yield from _named(match)
    else:
        raise BatchInputError(f"no such file or folder: {text}")


def _folder(folder: Path) -> Iterator[BatchFile]:
    found = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
    if not found:
        raise BatchInputError(
            f"{folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    for path in found:
        yield _file(path, path.parent.relative_to(folder))


def _file(
    path: Path, folder: PurePath, uri: str | None = None, transcript: Path | None = None
) -> BatchFile:
    path = path.resolve()
    size = path.stat().st_size if path.is_file() else 0
    resolved = transcript.resolve() if transcript is not None else None
    return BatchFile(path, uri or path.stem, folder, resolved, size)


def read_manifest(path: Path) -> list[BatchFile]:
    """The files a manifest lists: CSV with a header row naming the columns `path` and,
    optionally, `transcript` and `uri`; or JSON lines of objects with those keys. Relative
    paths are taken from the manifest's folder; outputs go flat into the output folder."""
    try:
        text = read_text_file(path, "a manifest", encoding="utf-8-sig")
    except TextFileError as error:
        raise BatchInputError(str(error)) from None
    if MANIFEST_FORMATS[path.suffix.lower()] == "csv":
        rows = _csv_rows(text, path)
    else:
        rows = _json_rows(text, path)
    files = [_manifest_file(row, path, number) for number, row in rows]
    if not files:
        raise BatchInputError(f"{path}: lists no files")
    return files


def _csv_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "path" not in reader.fieldnames:
        raise BatchInputError(f"{path}: the first line must name the columns, path among them")
    unknown = set(reader.fieldnames) - set(MANIFEST_FIELDS)
    if unknown:
        raise BatchInputError(
            f"{path}: unknown column {sorted(unknown)[0]!r}: expected {', '.join(MANIFEST_FIELDS)}"
        )
    for row in reader:
        yield reader.line_num, row


def _json_rows(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BatchInputError(f"{path} line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise BatchInputError(f"{path} line {number}: expected an object with a path")
        unknown = set(row) - set(MANIFEST_FIELDS)
        if unknown:
            raise BatchInputError(
                f"{path} line {number}: unknown key {sorted(unknown)[0]!r}: expected "
                f"{', '.join(MANIFEST_FIELDS)}"
            )
        yield number, row


def _manifest_file(row: dict[str, Any], manifest: Path, number: int) -> BatchFile:
    where = f"{manifest} line {number}"
    values = {}
    for field in MANIFEST_FIELDS:
        value = row.get(field)
        if value is not None and not isinstance(value, str):
            raise BatchInputError(f"{where}: {field} must be a string")
        values[field] = value.strip() if value else None
    if values["path"] is None:
        raise BatchInputError(f"{where}: no path")
    uri = values["uri"]
    if uri is not None and (any(c in uri for c in "/\\") or uri in (".", "..")):
        raise BatchInputError(f"{where}: uri {uri!r} must not hold / or \\ (it names files)")
    transcript = values["transcript"]
    return _file(
        manifest.parent / values["path"],
        PurePath(),
        uri,
        manifest.parent / transcript if transcript else None,
    )


def _check_distinct(files: Iterable[BatchFile]) -> None:
    seen: dict[tuple[PurePath, str], Path] = {}
    for file in files:
        key = (file.folder, file.uri)
        if key in seen:
            raise BatchInputError(
                f"{seen[key]} and {file.path} would write the same outputs "
                f"({file.folder / file.uri}.*): list them in a manifest with a uri for each"
            )
        seen[key] = file.path
