"""Silero VAD as a plain torch module, built from the weights shipped in `silero-vad`.

The packaged JIT model steps through 32 ms frames one call at a time. The same network is
written here so that the convolutional encoder runs on all frames of a batch of windows at
once and only the LSTM walks the frames, on whatever device the module lives on.
"""

from __future__ import annotations

from importlib import resources

import torch
from torch import nn

FRAME_SAMPLES = 512  # 32 ms at 16 kHz
CONTEXT_SAMPLES = 64  # tail of the previous frame prepended to each frame


class SileroVad(nn.Module):
    """Speech probability per 32 ms frame for a batch of 16 kHz waveforms."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)
        self.conv1 = nn.Conv1d(129, 128, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(128, 128, batch_first=True)
        self.final_conv = nn.Conv1d(128, 1, kernel_size=1)

    @classmethod
    def pretrained(cls) -> "SileroVad":
        """The 16 kHz weights of the JIT model that `silero-vad` loads by default, in eval mode."""
        threads = torch.get_num_threads()
        path = resources.files("silero_vad.data").joinpath("silero_vad.jit")
        torch.set_num_threads(threads)  # importing silero_vad sets it to 1 for everyone
        packaged = torch.jit.load(str(path), map_location="cpu")._model.state_dict()
        renames = {
            "stft.forward_basis_buffer": "stft_conv.weight",
            "decoder.decoder.2.weight": "final_conv.weight",
            "decoder.decoder.2.bias": "final_conv.bias",
        }
        for i in range(4):
            for part in ("weight", "bias"):
                renames[f"encoder.{i}.reparam_conv.{part}"] = f"conv{i + 1}.{part}"
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            renames[f"decoder.rnn.{part}"] = f"lstm.{part}_l0"
        state = {renames[name]: tensor for name, tensor in packaged.items()}
        model = cls()
        model.load_state_dict(state)
        return model.eval()

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        # frames: (n, CONTEXT_SAMPLES + FRAME_SAMPLES) -> (n, 128)
        x = nn.functional.pad(frames, (0, CONTEXT_SAMPLES), mode="reflect").unsqueeze(1)
        x = self.stft_conv(x)  # (n, 258, 4): real and imaginary parts of 129 bins
        x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        x = torch.relu(self.conv4(x))
        return x.squeeze(-1)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, frames) speech probabilities, frames = ceil(samples / 512).

        Each waveform starts with a fresh state, as the packaged model does after reset."""
        batch, samples = waveforms.shape
        num_frames = -(-samples // FRAME_SAMPLES)
        padded = nn.functional.pad(
            waveforms, (CONTEXT_SAMPLES, num_frames * FRAME_SAMPLES - samples)
        )  # (batch, CONTEXT_SAMPLES + num_frames * FRAME_SAMPLES)
        frames = padded.unfold(1, CONTEXT_SAMPLES + FRAME_SAMPLES, FRAME_SAMPLES)
        features = self._encode(frames.reshape(batch * num_frames, -1))
        hidden, _ = self.lstm(features.reshape(batch, num_frames, 128))
        logits = self.final_conv(torch.relu(hidden).transpose(1, 2))  # (batch, 1, frames)
        return torch.sigmoid(logits[:, 0])
