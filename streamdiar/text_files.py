"""Reading a small text file a user named, with one-line errors that name it."""

from __future__ import annotations

from pathlib import Path


class TextFileError(ValueError):
    """The file cannot be read as text; str(error) is one line starting with its path."""


def read_text_file(path: Path, kind: str, encoding: str = "utf-8", hint: str = "") -> str:
    """The whole text of `path`; `kind` names what a directory is not ("a transcript"), and
    `hint` follows the message when the bytes are not UTF-8."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise TextFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TextFileError(f"{path}: is a directory, not {kind}") from None
    except UnicodeDecodeError:
        raise TextFileError(f"{path}: not UTF-8 text{hint}") from None
    except OSError as error:
        raise TextFileError(f"{path}: cannot read: {error.strerror}") from None
