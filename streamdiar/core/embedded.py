"""The default, offline backend: Silero VAD for speech activity, the GE2E encoder shipped in
Resemblyzer for speaker vectors. Both run as torch modules on the chosen device, features too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from resemblyzer import VoiceEncoder
from torch import nn
from torchaudio.transforms import MelSpectrogram

from streamdiar.core.silero import FRAME_SAMPLES, SileroVad
from streamdiar.core.timing import StageClock
from streamdiar.core.types import SAMPLE_RATE, LocalSpeakers

MEL_HOP = 160  # 10 ms, as the encoder was trained
TARGET_DBFS = -30.0  # Resemblyzer's training-time loudness
VAD_DBFS = -25.0
MAX_GAIN_DB = 30.0


class EmbeddedBackend:
    """One local speaker per window: the speech in a short window is taken to be one voice.

    Windows are short (2 s) so that a window rarely spans a change of speaker; the stitcher
    resolves changes at the resolution of the window step.
    """

    name = "embedded"
    window_duration = 2.0
    window_step = 0.4
    file_window_duration, file_window_step = window_duration, window_step  # files: the same
    eigen_threshold = 0.3  # for the clustering, in GE2E's cosine space
    speech_threshold = 0.2  # on the VAD probability averaged over overlapping windows
    min_gap = 1.0  # s: the VAD's gaps between words are not changes of turn
    max_local_speakers = 1
    frame_step = FRAME_SAMPLES / SAMPLE_RATE

    def __init__(self, embed_threshold: float = 0.3, min_speech: float = 0.8) -> None:
        self.embed_threshold = embed_threshold
        self.min_speech_frames = round(min_speech * SAMPLE_RATE / MEL_HOP)
        self.vad = SileroVad.pretrained()
        self.encoder = VoiceEncoder(device="cpu", verbose=False).eval()
        self.mel = MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=400,
            hop_length=MEL_HOP,
            n_mels=40,
            norm="slaney",
            mel_scale="slaney",
            pad_mode="constant",
        )
        self._device = torch.device("cpu")
        self.clock = StageClock()

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: torch.device) -> "EmbeddedBackend":
        for module in (self.vad, self.encoder, self.mel):
            module.to(device)
        self.encoder.device = device
        self._device = device
        return self

    @torch.inference_mode()
    def infer(
        self,
        waveforms: torch.Tensor,
        step_samples: int | None = None,
        streams: Sequence[object | None] | None = None,
    ) -> list[LocalSpeakers]:
        # every window is its own: the GE2E vector is one pass over its speech, `step_samples`
        # and `streams` aside
        waveforms = waveforms.to(self._device, torch.float32)  # (batch, samples)
        with self.clock.stage("model", self._device):
            with self.clock.stage("segmentation", self._device):
                speech = self.vad(self._level(waveforms))  # (batch, frames)
            with self.clock.stage("embedding", self._device):
                embeddings, active = self._embed(waveforms, speech > self.embed_threshold)
        activity = speech.unsqueeze(-1).cpu().numpy()  # (batch, frames, 1)
        embeddings = embeddings.cpu().numpy()  # (batch, 1, dim)
        active = active.cpu().numpy()  # (batch, 1)
        return [
            LocalSpeakers(activity[i], embeddings[i], active[i], self.frame_step)
            for i in range(len(activity))
        ]

    def _level(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Quiet windows raised towards VAD_DBFS (at most MAX_GAIN_DB): Silero misses much of
        the quiet far-field speech of meeting rooms at its native level."""
        rms = waveforms.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=1e-6)
        gain = (10 ** (VAD_DBFS / 20) / rms).clamp(min=1.0, max=10 ** (MAX_GAIN_DB / 20))
        return waveforms * gain

    def _embed(self, waveforms: torch.Tensor, is_speech: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Speaker vectors (batch, 1, dim) from the speech frames only, and whether there was
        enough speech for one (batch, 1)."""
        mel = self.mel(waveforms).transpose(1, 2)  # (batch, mel_frames, 40)
        mel_frames = mel.shape[1]
        # each 10 ms mel frame takes the decision of the 32 ms VAD frame holding its centre
        vad_index = torch.clamp(
            torch.arange(mel_frames, device=mel.device) * MEL_HOP // FRAME_SAMPLES,
            max=is_speech.shape[1] - 1,
        )
        mel_speech = is_speech[:, vad_index]  # (batch, mel_frames)
        lengths = mel_speech.sum(dim=1)  # (batch,)
        # loudness normalisation as in Resemblyzer's preprocessing, from the speech samples only
        sample_speech = is_speech.repeat_interleave(FRAME_SAMPLES, dim=1)[:, : waveforms.shape[1]]
        power = (waveforms**2 * sample_speech).sum(1) / sample_speech.sum(1).clamp(min=1)
        gain = (10 ** (TARGET_DBFS / 10) / power.clamp(min=1e-10)).clamp(min=1.0)  # power ratio
        mel = mel * gain[:, None, None]
        # speech frames moved to the front of each sequence, in order, then packed
        order = torch.argsort((~mel_speech).to(torch.int8), dim=1, stable=True)
        packed_input = torch.gather(mel, 1, order.unsqueeze(-1).expand_as(mel))
        active = lengths >= self.min_speech_frames
        embeddings = torch.zeros(len(mel), self.encoder.linear.out_features, device=mel.device)
        if active.any():
            packed = nn.utils.rnn.pack_padded_sequence(
                packed_input[active], lengths[active].cpu(), batch_first=True, enforce_sorted=False
            )
            embeddings[active] = self.encoder(packed)
        return embeddings.unsqueeze(1), active.unsqueeze(1)
