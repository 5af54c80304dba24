"""The parts of `streamdiar batch` that need no model: inputs and manifests, outputs written
whole, the results table, retries, worker sizing and the progress numbers."""

import csv
from contextlib import closing
import io
import json
import sys
import time
from collections import deque
from pathlib import Path, PurePath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamdiar.batch.inputs import BatchFile, BatchInputError, collect_files
from streamdiar.batch.job import BatchTally, files_left, plan_workers
from streamdiar.batch.outputs import FileOutputs, partial, written_whole
from streamdiar.batch.results import COLUMNS, DONE, FAILED, ResultRow, ResultsTable
from streamdiar.batch.ray_pool import import_ray
from streamdiar.batch.retries import Attempts, BatchError


def touch(path: Path, size: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def test_folders_are_searched_for_audio_and_keep_their_subfolders(tmp_path):
    touch(tmp_path / "archive" / "a.wav", 10)
    touch(tmp_path / "archive" / "show" / "2024" / "b.MP3", 30)
    touch(tmp_path / "archive" / "notes.txt")
    files = collect_files([str(tmp_path / "archive")])
    assert [(f.path.name, f.folder, f.uri) for f in files] == [
        ("b.MP3", PurePath("show/2024"), "b"),
        ("a.wav", PurePath(), "a"),
    ]


def test_files_and_globs_are_taken_once_each_largest_first(tmp_path, monkeypatch):
    for name, size in (("x.wav", 5), ("y.wav", 50), ("z.flac", 20)):
        touch(tmp_path / name, size)
    monkeypatch.chdir(tmp_path)
    files = collect_files(["x.wav", "*.wav", "z.*", str(tmp_path / "x.wav")])
    assert [f.path for f in files] == [tmp_path / "y.wav", tmp_path / "z.flac", tmp_path / "x.wav"]
    assert all(f.path.is_absolute() for f in files)


def test_csv_and_json_lines_manifests_give_transcripts_and_uris(tmp_path):
    touch(tmp_path / "audio" / "one.wav", 3)
    touch(tmp_path / "audio" / "two.wav", 2)
    (tmp_path / "list.csv").write_text(
        "path,transcript,uri\naudio/one.wav,one.json,first\naudio/two.wav,,\n", encoding="utf-8"
    )
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"path": str(tmp_path / "missing.wav"), "uri": "gone"}) + "\n\n",
        encoding="utf-8",
    )
    files = collect_files([str(tmp_path / "list.csv"), str(tmp_path / "list.jsonl")])
    assert [(f.uri, f.transcript, f.size) for f in files] == [
        ("first", tmp_path / "one.json", 3),
        ("two", None, 2),
        ("gone", None, 0),  # checked by its worker: a failed row, not the end of the batch
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.csv", "file\na.wav\n", "the first line must name the columns, path among them"),
        ("m.csv", "path,speakers\na.wav,2\n", "unknown column 'speakers'"),
        ("m.csv", "path\n", "lists no files"),
        ("m.csv", "path,uri\n,x\n", "line 2: no path"),
        ("m.csv", "path,uri\na.wav,a/b\n", "uri 'a/b' must not hold /"),
        ("m.jsonl", '{"path": "a.wav"}\n[1]\n', "line 2: expected an object with a path"),
        ("m.jsonl", "{nope\n", "line 1: not JSON"),
        ("m.jsonl", '{"path": 3}\n', "line 1: path must be a string"),
        ("m.jsonl", '{"path": "a.wav", "lang": "en"}\n', "unknown key 'lang'"),
    ],
)
def test_bad_manifests_are_one_line_errors_that_say_where(tmp_path, name, text, message):
    manifest = tmp_path / name
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(BatchInputError, match=message) as caught:
        collect_files([str(manifest)])
    assert "\n" not in str(caught.value)


def test_inputs_that_name_nothing_are_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="no such file or folder"):
        collect_files([str(tmp_path / "nothing.wav")])
    with pytest.raises(BatchInputError, match="no file matches"):
        collect_files([str(tmp_path / "*.wav")])
    with pytest.raises(BatchInputError, match="holds no audio files"):
        collect_files([str(tmp_path / "empty")])


def test_two_files_that_would_share_outputs_are_an_error(tmp_path):
    touch(tmp_path / "a" / "talk.wav")
    touch(tmp_path / "b" / "talk.flac")
    with pytest.raises(BatchInputError, match="would write the same outputs"):
        collect_files([str(tmp_path / "a" / "talk.wav"), str(tmp_path / "b" / "talk.flac")])
    # found in one folder, they keep their subfolders apart
    assert len(collect_files([str(tmp_path)])) == 2


def test_a_file_is_done_when_all_its_outputs_exist(tmp_path):
    plain = BatchFile(tmp_path / "a.wav", "a", PurePath("x"))
    with_transcript = BatchFile(tmp_path / "b.wav", "b", PurePath(), tmp_path / "b.json")
    outputs = FileOutputs.of(with_transcript, tmp_path / "out", "vtt")
    assert [p.name for p in outputs.paths()] == ["b.rttm", "b.turns.jsonl", "b.vtt"]
    assert FileOutputs.of(plain, tmp_path / "out", "vtt").rttm == tmp_path / "out" / "x" / "a.rttm"
    for path in outputs.paths()[:2]:
        touch(path)
    assert files_left([plain, with_transcript], tmp_path / "out", "vtt") == [plain, with_transcript]
    touch(outputs.paths()[2])
    assert files_left([plain, with_transcript], tmp_path / "out", "vtt") == [plain]


def test_outputs_get_their_names_only_once_all_are_written(tmp_path):
    paths = [tmp_path / "o" / "a.rttm", tmp_path / "o" / "a.turns.jsonl"]
    with pytest.raises(RuntimeError):
        with written_whole(paths) as open_partial:
            open_partial(paths[0]).write("half")
            assert partial(paths[0]).exists()
            raise RuntimeError("the model failed")
    assert not any(p.exists() or partial(p).exists() for p in paths)
    with written_whole(paths) as open_partial:
        for path in paths:
            open_partial(path).write(path.name)
        assert not any(p.exists() for p in paths)
    assert [p.read_text() for p in paths] == ["a.rttm", "a.turns.jsonl"]
    assert not any(partial(p).exists() for p in paths)


def rows(folder: Path) -> tuple[list[dict], list[dict]]:
    lines = (folder / "results.jsonl").read_text(encoding="utf-8").split("\n")[:-1]
    jsonl = [json.loads(line) for line in lines]
    text = (folder / "results.csv").read_text(encoding="utf-8")
    table = list(csv.DictReader(io.StringIO(text, newline="")))
    return jsonl, table


def test_results_are_appended_to_json_lines_and_csv(tmp_path):
    done = ResultRow("/a/b.wav", "b", DONE, 30.0004, 2, 0.12345)
    failed = ResultRow.failed("/a/c,d.wav", "c,d", "cannot decode it:\n  bad header")
    with closing(ResultsTable(tmp_path)) as table:
        table.append(done)
    with closing(ResultsTable(tmp_path)) as table:  # a rerun appends, under the one header
        table.append(failed)
    jsonl, table_rows = rows(tmp_path)
    assert jsonl[0]["audio_seconds"] == 30.0 and jsonl[0]["real_time_factor"] == 0.123
    assert jsonl[1]["status"] == FAILED and jsonl[1]["error"] == "cannot decode it: bad header"
    assert [r["file"] for r in table_rows] == ["/a/b.wav", "/a/c,d.wav"]
    assert table_rows[1]["audio_seconds"] == "" and list(table_rows[0]) == COLUMNS


@given(
    cut=st.integers(min_value=0, max_value=400),
    uris=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3),
)
def test_a_table_cut_anywhere_takes_whole_rows_after_it(tmp_path_factory, cut, uris):
    folder = tmp_path_factory.mktemp("table")
    with closing(ResultsTable(folder)) as table:
        for uri in uris:
            table.append(ResultRow(f"/x/{uri}.wav", uri, DONE, 1.5, 1, 0.1))
    for path in (folder / "results.jsonl", folder / "results.csv"):
        data = path.read_bytes()
        path.write_bytes(data[: min(cut, len(data))])  # killed in the middle of a write
    with closing(ResultsTable(folder)) as table:
        table.append(ResultRow.failed("/x/last.wav", "last", "bad"))
    jsonl, table_rows = rows(folder)
    assert jsonl[-1]["uri"] == "last" and table_rows[-1]["uri"] == "last"
    assert [r["uri"] for r in jsonl[:-1]] == uris[: len(jsonl) - 1]
    assert all(list(r) == COLUMNS for r in table_rows)


def test_a_file_is_retried_then_recorded_as_failed(tmp_path):
    file = BatchFile(tmp_path / "a.wav", "a", PurePath())
    queue: deque[BatchFile] = deque()
    attempts = Attempts(retries=2)
    assert attempts.failed(file, "worker died", queue) is None
    assert attempts.failed(file, "worker died", queue) is None
    assert list(queue) == [file, file]
    row = attempts.failed(file, "worker died", queue)
    assert row is not None and row.status == FAILED
    assert row.error == "worker died (tried 3 times)" and len(queue) == 2
    assert Attempts(retries=0).failed(file, "lost", deque()).error == "lost (tried once)"


@pytest.mark.parametrize(
    ("cores", "gpus", "workers", "threads", "expected"),
    [
        (2, 0, None, None, (2, 1)),
        (16, 0, None, None, (16, 1)),
        (2, 0, 2, None, (2, 1)),
        (16, 4, None, None, (4, 4)),
        (8, 0, 3, 1, (3, 1)),
        (1, 0, 4, None, (4, 1)),
    ],
)
def test_workers_share_out_the_cores(cores, gpus, workers, threads, expected):
    assert plan_workers(cores, gpus, workers, threads) == expected


def test_tally_counts_hours_throughput_and_time_left(tmp_path, monkeypatch):
    clock = [1000.0]  # the run's clock stands still, so the rates are exact
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    files = [BatchFile(tmp_path / f"{n}.wav", str(n), PurePath(), size=100) for n in range(4)]
    tally = BatchTally.of(files, skipped=2)
    tally.started = clock[0]
    assert tally.time_left() is None and "ETA ?" in tally.describe()
    clock[0] += 10.0
    tally.add(ResultRow("0", "0", DONE, 1800.0, 2, 0.1), 100)
    tally.add(ResultRow.failed("1", "1", "bad"), 100)
    assert (tally.finished, tally.done, tally.failed) == (2, 1, 1)
    assert tally.speed() == 180.0
    assert tally.time_left() == 10.0
    assert tally.describe() == "2/4 files, 0.50 h of audio, 180.0x real time, ETA 0:00:10, 1 failed"
    assert tally.summary().startswith("1 files done, 1 failed, 2 done before: 0.50 h of audio")


def test_ray_missing_is_one_line_that_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(BatchError, match=r"--ray needs Ray: pip install 'streamdiar\[ray\]'"):
        import_ray()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing.wav"], "no such file or folder: nothing.wav"),
        (["--workers", "0", "x.wav"], "--workers must be at least 1, got 0"),
        (["--retries", "-1", "x.wav"], "--retries must be at least 0, got -1"),
        (["--latency", "9", "x.wav"], "latency must be between 0.5 and 5 s, got 9"),
    ],
)
def test_inputs_and_flags_no_batch_can_use_end_in_one_line(run_cli, tmp_path, args, message):
    result = run_cli("batch", *args, "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"streamdiar: error: {message}\n"
    assert not (tmp_path / "out").exists()
