"""The speaker store: the voiceprints of enrolled people, in an SQLite file on this machine.

Voiceprints are biometric data. They are written only to the file the user names (or the
default path below), deleted from it by `streamdiar speakers remove`, and never sent anywhere.
Every voiceprint records the model that made it; vectors of two models cannot be compared, so
a store holds one model's voiceprints and is refused, in one line, by a run of another model.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from streamdiar.errors import StreamdiarError

APPLICATION_ID = 0x53445350  # "SDSP": marks an SQLite file as a streamdiar speaker store
SCHEMA = """
CREATE TABLE voiceprints (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,  -- float32, little-endian
    source TEXT NOT NULL,  -- the audio it came from
    created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX voiceprints_by_name ON voiceprints (name);
"""
NAME_PATTERN = re.compile(r"[^\s\[\]<>]{1,64}")  # what RTTM, SRT and VTT carry whole


class SpeakerStoreError(StreamdiarError):
    """A speaker store that cannot be read or written, or that another model made."""


class EnrolmentError(StreamdiarError):
    """Enrolment audio without speech of the person, or a name that cannot be used."""


def check_name(name: str) -> str:
    """`name` if it can name a speaker in RTTM, JSON lines and subtitles; EnrolmentError else."""
    if not NAME_PATTERN.fullmatch(name) or re.fullmatch(r"SPEAKER_\d+", name):
        raise EnrolmentError(
            f"cannot enroll {name!r}: a name is 1-64 characters without spaces, [ ] < or >, "
            "and not SPEAKER_NN"
        )
    return name


def default_store_path() -> Path:
    """$XDG_DATA_HOME/streamdiar/speakers.sqlite, else ~/.local/share/streamdiar/speakers.sqlite."""
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "streamdiar" / "speakers.sqlite"


@dataclass(frozen=True)
class EnrolledPerson:
    name: str
    voiceprints: int
    model: str


class SpeakerStore:
    """An open speaker store. `create` makes the file (and its folder) when it is missing;
    otherwise a missing file is a SpeakerStoreError, as is a file that is not a store."""

    def __init__(self, path: str | os.PathLike[str], create: bool = False) -> None:
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise SpeakerStoreError(
                f"no speaker store at {self.path}: enroll someone first "
                f"(streamdiar enroll NAME AUDIO --db {self.path})"
            )
        if self.path.is_dir():
            raise SpeakerStoreError(f"speaker store {self.path} is a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._check_or_create()
        except sqlite3.OperationalError as error:
            raise SpeakerStoreError(f"cannot open speaker store {self.path}: {error}") from None
        except sqlite3.DatabaseError as error:
            raise SpeakerStoreError(
                f"{self.path} is not a streamdiar speaker store ({error})"
            ) from None
        except OSError as error:
            raise SpeakerStoreError(f"cannot open speaker store {self.path}: {error}") from None

    def _check_or_create(self) -> None:
        (application_id,) = self._db.execute("PRAGMA application_id").fetchone()
        if application_id == APPLICATION_ID:
            return
        (tables,) = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if application_id != 0 or tables:
            raise SpeakerStoreError(f"{self.path} is not a streamdiar speaker store")
        with self._db:
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def model(self) -> str | None:
        """The model whose voiceprints the store holds; None when it is empty."""
        row = self._db.execute("SELECT model FROM voiceprints LIMIT 1").fetchone()
        return None if row is None else row[0]

    def check_model(self, model: str) -> None:
        """Raises SpeakerStoreError when the store holds voiceprints of another model."""
        stored = self.model()
        if stored is not None and stored != model:
            raise SpeakerStoreError(
                f"{self.path} holds voiceprints of the model {stored}, which cannot be "
                f"compared with those of {model}: use another store"
            )

    def people(self) -> list[EnrolledPerson]:
        rows = self._db.execute(
            "SELECT name, count(*), model FROM voiceprints GROUP BY name, model ORDER BY name"
        )
        return [EnrolledPerson(*row) for row in rows]

    def add(self, name: str, model: str, vectors: np.ndarray, source: str) -> None:
        """Stores voiceprints (n, dim) of `name`, made by `model` from `source`."""
        self.check_model(model)
        with self._db:
            self._db.executemany(
                "INSERT INTO voiceprints (name, model, vector, source) VALUES (?, ?, ?, ?)",
                [(name, model, v.astype("<f4").tobytes(), source) for v in vectors],
            )

    def remove(self, name: str) -> int:
        """Deletes every voiceprint of `name`; returns how many there were. The freed pages
        are wiped (VACUUM), so that no trace of the voice stays in the file."""
        with self._db:
            removed = self._db.execute("DELETE FROM voiceprints WHERE name = ?", (name,)).rowcount
        self._db.execute("VACUUM")
        return removed

    def voiceprints(self, model: str) -> dict[str, np.ndarray]:
        """name -> voiceprints (m, dim) of every enrolled person; SpeakerStoreError when
        `model` did not make them."""
        self.check_model(model)
        people: dict[str, list[np.ndarray]] = {}
        for name, vector in self._db.execute("SELECT name, vector FROM voiceprints ORDER BY id"):
            people.setdefault(name, []).append(np.frombuffer(vector, dtype="<f4"))
        return {name: np.stack(vectors) for name, vectors in people.items()}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SpeakerStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
