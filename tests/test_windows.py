"""Windower: fixed-length overlapping windows from arbitrary blocks, in bounded memory."""

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdiar.core.types import SAMPLE_RATE, Window
from streamdiar.stream.windows import Windower, windows

DURATION, STEP = 2.0, 0.25
W, S = round(DURATION * SAMPLE_RATE), round(STEP * SAMPLE_RATE)  # 32000, 4000 samples


def signal(num_samples: int, seed: int = 0) -> np.ndarray:
    # no zeros inside the signal, so that padding can be told from content
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.1, 1.0, num_samples) * rng.choice([-1, 1], num_samples)).astype(np.float32)


def cut(audio: np.ndarray, blocks: list[int], duration: float = DURATION, step: float = STEP) -> list[Window]:
    """Windows of `audio` pushed as blocks of the given sizes (the rest as one last block)."""
    windower = Windower(duration, step)
    out: list[Window] = []
    position = 0
    for size in blocks:
        out += windower.push(audio[position : position + size])
        position += size
    out += windower.push(audio[position:])
    out += windower.finish()
    return out


def expected(num_samples: int, window: int, step: int) -> list[tuple[int, int, int]]:
    """(index, start sample, valid samples) of the windows a stream of that length gives."""
    full = [(i, i * step, window) for i in range(max(0, (num_samples - window) // step + 1))]
    if num_samples == 0:
        return []
    if not full:
        return [(0, 0, num_samples)]
    last_end = full[-1][1] + window
    if last_end < num_samples:
        i = len(full)
        return [*full, (i, i * step, num_samples - i * step)]
    return full


def check_against_audio(out: list[Window], audio: np.ndarray, window: int, step: int) -> None:
    assert [(w.index, round(w.start * SAMPLE_RATE), w.valid) for w in out] == expected(
        len(audio), window, step
    )
    for w in out:
        first = round(w.start * SAMPLE_RATE)
        assert w.start == pytest.approx(w.index * step / SAMPLE_RATE, abs=1e-12)
        assert w.samples.shape == (window,)
        assert w.samples.dtype == np.float32
        np.testing.assert_array_equal(w.samples[: w.valid], audio[first : first + w.valid])
        assert not w.samples[w.valid :].any(), "padding must be zeros"
        assert w.valid_end == pytest.approx((first + w.valid) / SAMPLE_RATE)


def test_full_windows_start_every_step_and_hold_the_input_slice():
    audio = signal(5 * SAMPLE_RATE)  # 5 s: full windows at 0, 0.25, ... 3.0 s reach the end exactly
    out = cut(audio, [1600] * 50)
    assert [w.index for w in out] == list(range(13))
    assert [w.start for w in out] == [i * STEP for i in range(13)]
    assert all(w.duration == DURATION and w.valid == W for w in out)
    check_against_audio(out, audio, W, S)


def test_one_padded_tail_window_when_the_full_windows_miss_the_tail():
    audio = signal(round(2.1 * SAMPLE_RATE))
    out = cut(audio, [SAMPLE_RATE // 10] * 21)
    assert len(out) == 2
    full, tail = out
    assert (full.start, full.valid) == (0.0, W)
    assert tail.index == 1 and tail.start == STEP
    assert tail.valid == len(audio) - S  # 1.85 s of real audio
    assert tail.valid_end == pytest.approx(2.1)
    assert len(tail.samples) == W and not tail.samples[tail.valid :].any()
    check_against_audio(out, audio, W, S)


def test_no_tail_window_when_the_full_windows_reach_the_end_exactly():
    audio = signal(round(2.25 * SAMPLE_RATE))
    windower = Windower(DURATION, STEP)
    out = windower.push(audio)
    assert [w.start for w in out] == [0.0, 0.25]
    assert windower.finish() == []


def test_input_shorter_than_a_window_gives_one_padded_window():
    audio = signal(12_345)
    windower = Windower(DURATION, STEP)
    assert windower.push(audio) == []
    (tail,) = windower.finish()
    assert (tail.index, tail.start, tail.valid) == (0, 0.0, 12_345)
    np.testing.assert_array_equal(tail.samples[:12_345], audio)
    assert len(tail.samples) == W and not tail.samples[12_345:].any()


def test_exactly_one_window_long_input_gives_one_unpadded_window():
    audio = signal(W)
    windower = Windower(DURATION, STEP)
    (only,) = windower.push(audio)
    assert only.valid == W
    assert windower.finish() == []


def test_empty_input_gives_no_window():
    windower = Windower(DURATION, STEP)
    assert windower.push(np.zeros(0, dtype=np.float32)) == []
    assert windower.finish() == []
    assert Windower(DURATION, STEP).finish() == []


@pytest.mark.parametrize(
    ("duration", "step"),
    [(2.0, 2.5), (1.0, 1.001), (0.0, 0.0), (2.0, 0.0), (0.0, 0.25), (-2.0, 0.25), (2.0, -0.25)],
)
def test_bad_window_settings_raise(duration, step):
    with pytest.raises(ValueError):
        Windower(duration, step)


def test_step_equal_to_duration_is_allowed():
    audio = signal(3 * SAMPLE_RATE + 5)
    out = cut(audio, [], duration=1.0, step=1.0)
    assert [(w.start, w.valid) for w in out] == [(0.0, 16_000), (1.0, 16_000), (2.0, 16_000), (3.0, 5)]


@pytest.mark.parametrize(("duration", "step"), [(1.0, 1e-5), (1e-5, 1e-5)])
def test_positive_settings_that_round_to_zero_samples_are_rejected_or_usable(duration, step):
    """A step (or window) under half a sample rounds to 0 samples: push() would then loop
    forever emitting windows. Such settings must be refused, or rounded up to usable ones."""
    try:
        windower = Windower(duration, step)
    except ValueError:
        return
    assert windower.step_samples >= 1 and windower.window_samples >= 1


def kept_samples(windower: Windower) -> int:
    """Samples the windower holds: its buffer and the blocks not joined to it yet."""
    return len(windower._buffer) + sum(len(block) for block in windower._pending)


def test_memory_stays_bounded_whatever_the_stream_length():
    rng = np.random.default_rng(1)
    windower = Windower(DURATION, STEP)
    count = 0
    for _ in range(400):  # about 5 minutes of audio in blocks of up to 1.5 s
        block = signal(int(rng.integers(0, 24_000)), seed=count)
        count += len(windower.push(block))
        assert kept_samples(windower) < W  # what is left after the windows were cut
    assert count > 1000


def test_one_huge_block_is_cut_whole_and_then_released():
    audio = signal(30 * SAMPLE_RATE)
    windower = Windower(DURATION, STEP)
    out = windower.push(audio)
    assert len(out) == (30 - 2) * 4 + 1
    assert kept_samples(windower) < W
    check_against_audio(out + windower.finish(), audio, W, S)


@st.composite
def split_streams(draw):
    """A window and step in samples, a signal, and block sizes that cut it (any sizes, 0 too)."""
    window = draw(st.integers(1, 64))
    step = draw(st.integers(1, window))
    length = draw(st.integers(0, 300))
    sizes = draw(
        st.lists(st.one_of(st.just(0), st.just(1), st.integers(0, 120)), max_size=60)
    )
    return window, step, length, sizes


@settings(max_examples=200, deadline=None)
@given(split_streams())
def test_any_split_into_blocks_gives_the_same_windows(case):
    window, step, length, sizes = case
    duration, step_s = window / SAMPLE_RATE, step / SAMPLE_RATE
    audio = signal(length, seed=length)
    reference = cut(audio, [], duration, step_s)  # one block
    check_against_audio(reference, audio, window, step)
    one_by_one = cut(audio, [1] * length, duration, step_s)
    split = cut(audio, sizes, duration, step_s)
    for out in (one_by_one, split):
        assert len(out) == len(reference)
        for got, want in zip(out, reference):
            assert (got.index, got.start, got.valid) == (want.index, want.start, want.valid)
            np.testing.assert_array_equal(got.samples, want.samples)


async def _blocks(audio: np.ndarray, sizes: list[int]) -> AsyncIterator[np.ndarray]:
    position = 0
    for size in sizes:
        yield audio[position : position + size]
        position += size
        await asyncio.sleep(0)
    yield audio[position:]


async def _collect(audio: np.ndarray, sizes: list[int], duration: float, step: float) -> list[Window]:
    return [w async for w in windows(_blocks(audio, sizes), Windower(duration, step))]


@settings(max_examples=50, deadline=None)
@given(split_streams())
def test_async_windows_match_push_and_finish(case):
    window, step, length, sizes = case
    duration, step_s = window / SAMPLE_RATE, step / SAMPLE_RATE
    audio = signal(length, seed=length + 1)
    got = asyncio.run(_collect(audio, sizes, duration, step_s))
    want = cut(audio, sizes, duration, step_s)
    assert [(w.index, w.start, w.valid) for w in got] == [(w.index, w.start, w.valid) for w in want]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.samples, b.samples)


def test_async_windows_on_real_settings_end_with_the_padded_tail():
    audio = signal(round(7.3 * SAMPLE_RATE))
    got = asyncio.run(_collect(audio, [SAMPLE_RATE // 10] * 72, DURATION, STEP))
    check_against_audio(got, audio, W, S)
    assert got[-1].valid < W and got[-1].valid_end == pytest.approx(7.3)
