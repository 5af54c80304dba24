"""Frame features of a file's consecutive windows, cut from one trunk pass over the stretch
they cover instead of one pass per window.

Consecutive windows overlap by most of their length, so per-window passes send every second
of a file through the speaker encoder's trunk once per window that holds it (3 times for
the default backend's file windows, 10 s every 10/3 s, 10 times for pyannote.audio's step of
1 s). The trunks of both encoders are convolutional up to statistics pooling, so the frames
of a long pass are close to each window's own; only what is normalised or averaged over the
whole input (fbank means, CAM++'s masking context) then covers the stretch instead of the
window. Tests bound how far the vectors move.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Consecutive windows whose frames come from one pass: 16 windows 10/3 s apart share one pass
# over 60 s instead of 16 passes over 10 s (README, "File mode: longer windows, and a shared
# CAM++ trunk").
WINDOWS_PER_PASS = 16


def consecutive_window_frames(
    forward_frames: Callable[[torch.Tensor], torch.Tensor],
    waveforms: torch.Tensor,
    step_samples: int,
    frame_samples: int,
    window_frames: int,
) -> torch.Tensor:
    """Frame features (batch, ..., frames) of consecutive windows (batch, 1, samples) that
    start `step_samples` apart, cut from one `forward_frames` pass per WINDOWS_PER_PASS
    windows over the stretch they cover.

    `forward_frames` maps (1, 1, samples) to (1, ..., frames) with frames `frame_samples`
    apart, `window_frames` of them for one window. A window that starts between two frames is
    cut from the nearest one (at most half a frame off). Windows that do not overlap get a
    pass each.
    """
    if step_samples > waveforms.shape[-1]:
        return forward_frames(waveforms)
    hop = step_samples / frame_samples  # frames between window starts
    parts = []
    for first in range(0, len(waveforms), WINDOWS_PER_PASS):
        group = waveforms[first : first + WINDOWS_PER_PASS, 0]  # (g, samples)
        # the first window, then what each next one adds at its end
        stretch = torch.cat([group[0], group[1:, -step_samples:].reshape(-1)])
        frames = forward_frames(stretch.view(1, 1, -1))[0]  # (..., stretch frames)
        starts = torch.arange(len(group), device=frames.device) * hop
        starts = torch.floor(starts + 0.5).long().clamp(max=frames.shape[-1] - window_frames)
        index = starts[:, None] + torch.arange(window_frames, device=frames.device)  # (g, f)
        parts.append(frames[..., index].movedim(-2, 0))  # (g, ..., f)
    return torch.cat(parts)
