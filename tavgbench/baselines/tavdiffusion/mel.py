"""AudioLDM's mel front end in torch: magnitude STFT, Slaney mel filter bank, log compression.

AudioLDM (and so its VAE and HiFi-GAN vocoder) works on ``log(max(mel, 1e-5))`` of the
*magnitude* STFT (periodic Hann window of ``n_fft`` samples, ``n_fft`` = 1024, hop 160 at 16 kHz,
centred frames: the signal reflect-padded by ``n_fft / 2`` on each side, as AudioLDM's
Tacotron-style ``STFT.transform`` does, so ``samples / hop + 1`` frames), projected on a 64-band
Slaney-style mel filter bank (Slaney mel scale, area-normalised bands, 0-8000 Hz), laid out
``[frames, mels]``. Before it, :func:`normalize_waveform` gives the waveform AudioLDM's levels.
No librosa or torchaudio is needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_F_SP = 200.0 / 3  # Slaney scale: Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel_slaney(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = torch.as_tensor(hz, dtype=torch.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(hz, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz_slaney(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mel = torch.as_tensor(mel, dtype=torch.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def slaney_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
) -> torch.Tensor:
    """Triangular mel filters on the Slaney scale, each normalised to unit area (``norm="slaney"``).

    Returns:
        ``[n_mels, n_fft // 2 + 1]`` float32 weights.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(
        float(hz_to_mel_slaney(torch.tensor(fmin))),
        float(hz_to_mel_slaney(torch.tensor(fmax))),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_points = mel_to_hz_slaney(mel_points)
    widths = torch.diff(hz_points)
    ramps = hz_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    weights *= (2.0 / (hz_points[2:] - hz_points[:-2]))[:, None]
    return weights.to(torch.float32)


def normalize_waveform(waveform: torch.Tensor) -> torch.Tensor:
    """AudioLDM's input levels: each waveform ``[batch, samples]`` without its mean, scaled to a
    peak of 0.5 (its ``normalize_wav``; silence stays silent)."""
    centred = waveform - waveform.mean(dim=-1, keepdim=True)
    peak = centred.abs().amax(dim=-1, keepdim=True)
    return 0.5 * centred / (peak + 1e-8)


class LogMelSpectrogram(nn.Module):
    """Waveforms ``[batch, samples]`` to AudioLDM log-mel spectrograms ``[batch, frames, mels]``."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 160,
        n_mels: int = 64,
        fmin: float = 0.0,
        fmax: float = 8000.0,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer(
            "filterbank",
            slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax),
            persistent=False,
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            waveform.float(),
            self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        mel = torch.matmul(self.filterbank, spec.abs())
        return torch.log(torch.clamp(mel, min=1e-5)).transpose(1, 2)
