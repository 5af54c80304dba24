"""The SQLite speaker store: round trips, one model per store, files that are not stores."""

import sqlite3

import numpy as np
import pytest

from streamdiar.speaker_store import SpeakerStore, SpeakerStoreError, default_store_path

MODEL = "campplus_cn_en_common sha256:0123"


def test_voiceprints_round_trip_and_remove_deletes_them(tmp_path):
    path = tmp_path / "people" / "speakers.sqlite"
    vectors = np.random.default_rng(0).normal(size=(3, 192)).astype(np.float32)
    with SpeakerStore(path, create=True) as store:
        store.add("Alice", MODEL, vectors, "alice.wav")
        store.add("Bob", MODEL, -vectors[:1], "bob.wav")
    with SpeakerStore(path) as store:
        assert [(p.name, p.voiceprints, p.model) for p in store.people()] == [
            ("Alice", 3, MODEL),
            ("Bob", 1, MODEL),
        ]
        stored = store.voiceprints(MODEL)
        assert stored["Alice"] == pytest.approx(vectors)
        assert store.remove("Alice") == 3
        assert store.remove("Alice") == 0
        assert list(store.voiceprints(MODEL)) == ["Bob"]
    kept = path.read_bytes()
    assert not any(v.tobytes() in kept for v in vectors), "a removed voiceprint stays in the file"


def test_a_store_of_another_model_is_refused(tmp_path):
    path = tmp_path / "speakers.sqlite"
    with SpeakerStore(path, create=True) as store:
        store.add("Alice", "embedded", np.ones((1, 256)), "alice.wav")
    with SpeakerStore(path) as store:
        with pytest.raises(SpeakerStoreError, match="holds voiceprints of the model embedded"):
            store.voiceprints(MODEL)
        with pytest.raises(SpeakerStoreError, match="compared with those of " + MODEL):
            store.add("Bob", MODEL, np.ones((1, 192)), "bob.wav")


def test_files_that_are_not_stores_are_refused_in_one_line(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00not a database at all" * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    for path in (garbage, other):
        with pytest.raises(SpeakerStoreError, match="is not a streamdiar speaker store") as error:
            SpeakerStore(path)
        assert "\n" not in str(error.value)
    with pytest.raises(SpeakerStoreError, match="no speaker store at"):
        SpeakerStore(tmp_path / "missing.sqlite")
    with pytest.raises(SpeakerStoreError, match="is a directory"):
        SpeakerStore(tmp_path, create=True)


def test_the_default_store_lives_in_the_users_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_path() == tmp_path / "streamdiar" / "speakers.sqlite"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_store_path() == tmp_path / ".local" / "share" / "streamdiar" / "speakers.sqlite"
