"""A generated conversation longer than the clustering's memory, through the CLI: at most one
speaker more than there are voices, and the speaker who is away for two minutes comes
back under their old label."""

import collections
import shutil

import pytest
from pyannote.core import Segment

from streamdiar.evaluation import diarization_error_rate, load_rttm
from streamdiar.synthetic import generate_conversation

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is absent")

SECONDS, AWAY = 240.0, (60.0, 180.0)


@pytest.fixture(scope="module")
def diarized(run_cli, tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    audio, reference, hypothesis = folder / "talk.wav", folder / "talk.rttm", folder / "hyp.rttm"
    generate_conversation(audio, reference, SECONDS, 3, seed=11, absent=AWAY)
    result = run_cli("diarize", audio, "--rttm", hypothesis)
    assert result.returncode == 0, result.stderr
    return load_rttm(reference)["talk"], load_rttm(hypothesis)["talk"]


def _label_shares(reference, hypothesis, voice: str, span: Segment) -> collections.Counter[str]:
    """Seconds of `voice`'s speech inside `span` under each hypothesis label."""
    talk: collections.Counter[str] = collections.Counter()
    for segment in reference.label_timeline(voice).crop(span):
        for turn, _, label in hypothesis.crop(segment).itertracks(yield_label=True):
            talk[label] += turn.duration
    return talk


def test_a_speaker_back_after_two_minutes_has_their_old_label(diarized) -> None:
    reference, hypothesis = diarized
    before = _label_shares(reference, hypothesis, "voice3", Segment(0, AWAY[0])).most_common(1)
    after = _label_shares(reference, hypothesis, "voice3", Segment(AWAY[1], SECONDS))
    others = {
        voice: _label_shares(reference, hypothesis, voice, Segment(0, SECONDS)).most_common(1)
        for voice in ("voice1", "voice2")
    }
    print(f"\nvoice3 before: {before}; after its return: {dict(after)}; the others: {others}")
    assert before[0][0] not in {shares[0][0] for shares in others.values()}, "its own label"
    assert after[before[0][0]] >= 0.6 * sum(after.values()), "most of it under its old label"


def test_der_is_reported(diarized) -> None:
    reference, hypothesis = diarized
    report = diarization_error_rate({"talk": reference}, {"talk": hypothesis})
    print(f"\nDER {100 * report.der:.1f} % (confusion {100 * report.confusion:.1f} %)")
    assert report.der < 0.5


def test_at_most_one_speaker_more_than_voices(diarized) -> None:
    labels = diarized[1].labels()
    print(f"\n{len(labels)} labels for 3 voices: {', '.join(labels)}")
    assert len(labels) <= 3 + 1
