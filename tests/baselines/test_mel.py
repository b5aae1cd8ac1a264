"""AudioLDM's mel front end against transformers' Slaney filter bank and the STFT framing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tavgbench.baselines.tavdiffusion.mel import LogMelSpectrogram, slaney_mel_filterbank


def test_filterbank_matches_transformers_slaney() -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    reference = audio_utils.mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=64,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )
    ours = slaney_mel_filterbank(16000, 1024, 64, 0.0, 8000.0).numpy().T
    # Reference: transformers' librosa-compatible filter bank; float32 rounding, 1e-7 absolute
    # against weights of order 1e-2.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7)


def test_log_mel_framing_and_floor() -> None:
    mel = LogMelSpectrogram()
    out = mel(torch.zeros(2, 16000))
    # AudioLDM: reflect padding of (n_fft - hop) / 2 and no centring give samples / hop frames.
    assert out.shape == (2, 100, 64)
    # Silence sits at the log floor, log(1e-5).
    torch.testing.assert_close(out, torch.full_like(out, float(np.log(1e-5))))


def test_log_mel_peaks_at_the_tone() -> None:
    t = torch.arange(16000) / 16000
    out = LogMelSpectrogram()(torch.sin(2 * torch.pi * 1000 * t)[None])
    centres = slaney_mel_filterbank(16000, 1024, 64, 0.0, 8000.0).argmax(dim=1) * 16000 / 1024
    peak = int(out[0, 50].argmax())
    # The loudest band is the one whose centre is nearest 1 kHz (bands are ~100 Hz wide there).
    assert abs(float(centres[peak]) - 1000) < 120
