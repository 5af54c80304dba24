"""CAM++'s front (filterbank and FCM head) computed once per live step instead of once per
window.

Live windows 8 s long and 0.5 s apart share 7.5 s of audio. The filterbank is frame by frame
and the head convolutional (a receptive field of 21 filterbank frames), so a window's first
frames are the previous window's last ones, shifted: only the new 0.5 s is computed, with a
margin recomputed behind it that now has its right context. What is not shared is the mean
normalisation: each part of the head's input is normalised with the mean of the window in
which it was computed, not the one it is pooled in (dev DER: README "The default models").
The D-TDNN body after the head, whose masking layers look at the whole window, runs on every
window.

Each stream's latest window is kept apart, so that streams merged into one batch never share
frames, and a window's result depends only on its own stream's earlier windows (its head
frames were normalised by their means), never on how streams interleave. A window that does
not continue its stream's latest one sample for sample (a stream's first, or one after a gap
in it) is computed whole. The campplus backend computes the front of every live window, with
speech or not, so that the next one continues it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from streamdiar.core.fbank import FRAME_SHIFT, KaldiFbank

# Head frames behind the new ones that are computed again: the head sees 10 frames either
# side, so the previous window's last 10 had no right context; 20 keeps a margin.
RECOMPUTED_FRAMES = 20
HEAD_CONTEXT = 10  # frames of the head's receptive field on either side


@dataclass
class _Front:
    tail: np.ndarray  # (samples - step,) the window's samples that a next window starts with
    fbank: torch.Tensor  # (frames, mels) log mel energies, not normalised
    head: torch.Tensor  # (channels, frames) head output


class LiveFront:
    """Filterbank and head frames of each live stream's latest window, for the window that
    continues it `step_samples` later. A stream is any object that lives as long as it does:
    what was kept for it goes with it."""

    def __init__(self, fbank: KaldiFbank, step_samples: int) -> None:
        self.fbank = fbank
        self.step_samples = step_samples
        self._new_frames = step_samples // FRAME_SHIFT  # fbank frames a step adds
        # head inputs computed per step when shared: the new frames, the recomputed ones and
        # the context before them
        self._head_inputs = self._new_frames + RECOMPUTED_FRAMES + HEAD_CONTEXT
        self._fronts: weakref.WeakKeyDictionary[object, _Front] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def head_frames(
        self,
        waveforms: torch.Tensor,
        streams: Sequence[object | None],
        head: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Head output (batch, channels, fbank frames) of CPU waveforms (batch, 1, samples),
        each window's filterbank normalised by its mean, as `CampplusEncoder.features`;
        `streams`: the stream of each window (a stream's windows in order), None for a window
        of no stream, computed whole and not kept."""
        with self._lock:
            pairs = zip(waveforms, streams, strict=True)
            return torch.stack([self._one(waveform[0], stream, head) for waveform, stream in pairs])

    def _one(
        self,
        waveform: torch.Tensor,
        stream: object | None,
        head: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Head output (channels, frames) of one window (samples,) of `stream`."""
        samples = waveform.numpy()
        new_frames = self._new_frames
        previous = None if stream is None else self._fronts.get(stream)
        if (
            previous is not None
            and len(previous.fbank) > self._head_inputs
            and np.array_equal(previous.tail, samples[: len(samples) - self.step_samples])
        ):
            kept = len(previous.fbank) - new_frames
            # frame j starts at sample j * FRAME_SHIFT: the new frames need the samples from there
            added = self.fbank(waveform[None, kept * FRAME_SHIFT :])[0]  # (new_frames, mels)
            fbank = torch.cat([previous.fbank[new_frames:], added])
            features = (fbank - fbank.mean(dim=0)).T  # (mels, frames)
            first = len(fbank) - new_frames - RECOMPUTED_FRAMES  # the first head frame computed
            part = head(features[None, :, first - HEAD_CONTEXT :])[0, :, HEAD_CONTEXT:]
            frames = torch.cat([previous.head[:, new_frames : new_frames + first], part], dim=1)
        else:
            fbank = self.fbank(waveform[None])[0]  # (frames, mels)
            frames = head((fbank - fbank.mean(dim=0)).T[None])[0]  # (channels, frames)
        if stream is not None:
            self._fronts[stream] = _Front(samples[self.step_samples :].copy(), fbank, frames)
        return frames
