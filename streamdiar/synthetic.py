"""Long-form test conversations of any length with a known answer: `espeak-ng` voices speak
generated sentences in turns, and the turns' times are written as a reference RTTM.

Real recordings with reference annotations are short; hour-long behaviour (memory, label
stability, speakers who leave and come back) needs hours of audio whose truth is exact. The
voices differ in accent, voice variant, pitch and speed, far enough apart for a speaker encoder
to tell them apart and close enough to need care. The audio is written as it is made, so any
length takes the same memory.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from streamdiar.core.types import SAMPLE_RATE, Turn
from streamdiar.stream.sinks import RttmWriter

WORDS = (
    "the a our this that every some project meeting budget report team plan idea question "
    "answer week month morning evening data result model design customer market price office "
    "city river garden kitchen window letter story music picture friend family teacher doctor "
    "is was will could should might needs wants finds takes makes gives sends reads writes "
    "builds changes moves opens closes starts finishes checks shows helps keeps brings really "
    "quite very almost never always often soon later again together carefully quickly slowly "
    "new old big small early late good better simple difficult important possible clear quiet "
    "about after before during under over with without from into through around between"
).split()
SPEAKER_GAIN_DB = (-22.0, -26.0, -20.0, -24.0, -23.0, -21.0, -25.0, -19.0)
NOISE_DBFS = -62.0  # a quiet room, so that pauses are not digital silence
SENTENCES_PER_VOICE = 24
BLOCK_SECONDS = 10.0


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed; str(error) is one clear line."""


@dataclass(frozen=True)
class Voice:
    name: str  # espeak-ng voice and variant
    pitch: int  # 0-99
    speed: int  # words per minute


VOICES = (
    Voice("en-us+m3", 45, 165),
    Voice("en-gb+f3", 70, 175),
    Voice("en-gb-scotland+m7", 30, 150),
    Voice("en-029+f5", 60, 185),
    Voice("en-gb-x-rp+f2", 80, 160),
    Voice("en-us+m1", 55, 140),
    Voice("en-gb-x-gbclan+m4", 35, 180),
    Voice("en-gb-x-gbcwmd+f4", 65, 150),
)


@dataclass(frozen=True)
class PlannedTurn:
    speaker: int  # index into the voices
    start: float  # s
    sentences: tuple[int, ...]  # indices into the speaker's sentences
    pauses: tuple[float, ...]  # s of silence after each sentence but the last


def speaker_label(speaker: int) -> str:
    return f"voice{speaker + 1}"


def _synthesize(voice: Voice, text: str) -> np.ndarray:
    """(samples,) float32 at SAMPLE_RATE, leading and trailing silence cut off."""
    command = ["espeak-ng", "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed)]
    try:
        result = subprocess.run([*command, "--stdout", text], capture_output=True, check=True)
    except subprocess.CalledProcessError as error:
        reason = error.stderr.decode(errors="replace").strip() or f"exit status {error.returncode}"
        raise SynthesisError(f"espeak-ng failed for voice {voice.name}: {reason}") from None
    audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
    audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1] / np.abs(audio).max()


def _sentences(voice: Voice, rng: np.random.Generator, gain_db: float) -> list[np.ndarray]:
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(6, 16))) for _ in range(SENTENCES_PER_VOICE)]
    gain = 10 ** (gain_db / 20) * 3.0  # peak-normalised speech sits about 10 dB above its RMS
    return [_synthesize(voice, text) * gain for text in texts]


def plan_turns(
    durations: list[list[float]],
    seconds: float,
    rng: np.random.Generator,
    absent: tuple[float, float] | None,
) -> Iterator[PlannedTurn]:
    """Turns until `seconds`: speakers take turns at random (never twice in a row), one to
    three sentences each, with pauses of 0.2-1.2 s between turns and 0.1-0.3 s inside one.
    `durations[speaker][sentence]` is each sentence's length in seconds. The last speaker says
    nothing in the `absent` interval (s), so that a speaker returns after a long silence."""
    speakers = len(durations)
    longest = 3 * max(max(d) for d in durations) + 0.6  # s, the longest turn possible
    time, previous = 0.5, -1
    while True:
        present = [
            s
            for s in range(speakers)
            if not (absent and s == speakers - 1 and time < absent[1] and time + longest > absent[0])
        ]
        if not present:  # a lone speaker, away
            time = absent[1]
            continue
        choices = [s for s in present if s != previous] or present
        speaker = int(rng.choice(choices))
        sentences = tuple(int(i) for i in rng.integers(0, SENTENCES_PER_VOICE, rng.integers(1, 4)))
        pauses = tuple(float(p) for p in rng.uniform(0.1, 0.3, len(sentences) - 1))
        while True:  # near the end, the turn's last sentences are left out until it fits
            length = sum(durations[speaker][i] for i in sentences) + sum(pauses)
            if time + length <= seconds or len(sentences) == 1:
                break
            sentences, pauses = sentences[:-1], pauses[:-1]
        if time + length > seconds:
            return
        yield PlannedTurn(speaker, time, sentences, pauses)
        time += length + float(rng.uniform(0.2, 1.2))
        previous = speaker


def generate_conversation(
    audio_path: Path,
    rttm_path: Path,
    seconds: float,
    speakers: int,
    seed: int = 0,
    absent: tuple[float, float] | None = None,
    uri: str | None = None,
) -> int:
    """Writes `seconds` of 16 kHz mono audio of `speakers` voices taking turns to `audio_path`
    (WAV or FLAC, from its suffix) and their turns to `rttm_path` under `uri` (default: the
    audio file's stem); returns the number of turns.
    The same arguments always give the same files."""
    if not 1 <= speakers <= len(VOICES):
        raise ValueError(f"speakers must be between 1 and {len(VOICES)}, got {speakers}")
    if shutil.which("espeak-ng") is None:
        raise SynthesisError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    rng = np.random.default_rng(seed)
    pools = [_sentences(VOICES[s], rng, SPEAKER_GAIN_DB[s]) for s in range(speakers)]
    durations = [[len(a) / SAMPLE_RATE for a in pool] for pool in pools]
    total = round(seconds * SAMPLE_RATE)
    block = round(BLOCK_SECONDS * SAMPLE_RATE)
    uri = uri or audio_path.stem
    turns = 0
    with soundfile.SoundFile(audio_path, "w", SAMPLE_RATE, 1, "PCM_16") as audio, RttmWriter(
        rttm_path
    ) as rttm:
        buffer = np.zeros(0, dtype=np.float32)  # audio from `written` on
        written = 0

        def write(count: int) -> None:
            """Writes the next `count` samples, with room noise."""
            nonlocal buffer, written
            chunk = np.zeros(count, dtype=np.float32)
            chunk[: min(count, len(buffer))] = buffer[:count]
            chunk += rng.normal(0.0, 10 ** (NOISE_DBFS / 20), count).astype(np.float32)
            audio.write(np.clip(chunk, -1.0, 1.0))
            buffer, written = buffer[count:], written + count

        def write_until(sample: int) -> None:
            """Writes every block that ends before `sample`."""
            while written + block <= sample:
                write(block)

        for turn in plan_turns(durations, seconds, rng, absent):
            start = round(turn.start * SAMPLE_RATE)
            write_until(start)
            pieces = []
            for sentence, pause in zip(turn.sentences, (*turn.pauses, 0.0)):
                pieces += [pools[turn.speaker][sentence], np.zeros(round(pause * SAMPLE_RATE), np.float32)]
            speech = np.concatenate(pieces)
            offset = start - written
            if len(buffer) < offset + len(speech):
                buffer = np.concatenate([buffer, np.zeros(offset + len(speech) - len(buffer), np.float32)])
            buffer[offset : offset + len(speech)] += speech
            end = (start + len(speech)) / SAMPLE_RATE
            rttm.write(uri, Turn(start / SAMPLE_RATE, end, speaker_label(turn.speaker)))
            turns += 1
        write_until(total - total % block)
        if total > written:
            write(total - written)
    return turns
