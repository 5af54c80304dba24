"""Kaldi-compatible log mel filterbanks for a batch of waveforms, on their device.

`torchaudio.compliance.kaldi.fbank` computes the same features one waveform at a time; CAM++
was trained on them (25 ms frames every 10 ms, povey window, pre-emphasis 0.97, DC offset
removed, no dither, 512-point FFT, power spectrum, mel bins from 20 Hz to Nyquist).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchaudio.compliance.kaldi import get_mel_banks

from streamdiar.core.types import SAMPLE_RATE

FRAME_LENGTH = 400  # samples, 25 ms
FRAME_SHIFT = 160  # samples, 10 ms
FFT_SIZE = 512  # the frame length rounded up to a power of two
PREEMPHASIS = 0.97
LOW_FREQUENCY = 20.0  # Hz


class KaldiFbank(nn.Module):
    """Log mel filterbank energies (batch, frames, mels) of waveforms (batch, samples)."""

    def __init__(self, num_mels: int = 80) -> None:
        super().__init__()
        window = torch.hann_window(FRAME_LENGTH, periodic=False).pow(0.85)
        banks, _ = get_mel_banks(num_mels, FFT_SIZE, SAMPLE_RATE, LOW_FREQUENCY, 0.0, 100.0, -500.0, 1.0)
        banks = F.pad(banks, (0, 1))  # (mels, FFT_SIZE // 2 + 1): no weight on Nyquist
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("banks", banks.float().T.contiguous(), persistent=False)

    @staticmethod
    def num_frames(num_samples: int) -> int:
        """Frames of `num_samples` samples (Kaldi's snip_edges: whole frames only)."""
        return max(0, 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        frames = waveforms.unfold(-1, FRAME_LENGTH, FRAME_SHIFT)  # (batch, frames, 400)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - PREEMPHASIS * previous) * self.window
        spectrum = torch.fft.rfft(frames, n=FFT_SIZE).abs().pow(2)  # (batch, frames, 257)
        energies = spectrum @ self.banks  # (batch, frames, mels)
        return energies.clamp_min(torch.finfo(energies.dtype).eps).log()
