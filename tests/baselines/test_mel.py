"""AudioLDM's mel front end against transformers' Slaney filter bank and the STFT framing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tavgbench.baselines.tavdiffusion.mel import (
    LogMelSpectrogram,
    normalize_waveform,
    slaney_mel_filterbank,
)


def _transformers_filters(audio_utils: Any) -> np.ndarray:
    """transformers' librosa-compatible Slaney filter bank for AudioLDM's 64 bands."""
    return audio_utils.mel_filter_bank(
        num_frequency_bins=513,
        num_mel_filters=64,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )


def test_filterbank_matches_transformers_slaney() -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    reference = _transformers_filters(audio_utils)
    ours = slaney_mel_filterbank(16000, 1024, 64, 0.0, 8000.0).numpy().T
    # Reference: transformers' librosa-compatible filter bank; float32 rounding, 1e-7 absolute
    # against weights of order 1e-2.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7)


def test_log_mel_framing_and_floor() -> None:
    mel = LogMelSpectrogram()
    out = mel(torch.zeros(2, 16000))
    # AudioLDM's centred frames (reflect padding of n_fft / 2): samples / hop + 1 frames.
    assert out.shape == (2, 101, 64)
    # Silence sits at the log floor, log(1e-5).
    torch.testing.assert_close(out, torch.full_like(out, float(np.log(1e-5))))


def test_log_mel_peaks_at_the_tone() -> None:
    t = torch.arange(16000) / 16000
    out = LogMelSpectrogram()(torch.sin(2 * torch.pi * 1000 * t)[None])
    centres = slaney_mel_filterbank(16000, 1024, 64, 0.0, 8000.0).argmax(dim=1) * 16000 / 1024
    peak = int(out[0, 50].argmax())
    # The loudest band is the one whose centre is nearest 1 kHz (bands are ~100 Hz wide there).
    assert abs(float(centres[peak]) - 1000) < 120


def test_log_mel_matches_transformers_spectrogram() -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    g = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.randn(16000, generator=g, dtype=torch.float64)
    filters = _transformers_filters(audio_utils)
    reference = audio_utils.spectrogram(
        wave.numpy(),
        audio_utils.window_function(1024, "hann"),
        frame_length=1024,
        hop_length=160,
        power=1.0,
        center=True,
        pad_mode="reflect",
        mel_filters=filters,
        mel_floor=1e-5,
        log_mel="log",
        dtype=np.float64,
    )
    ours = LogMelSpectrogram()(wave.float()[None])[0].numpy().T
    # Reference: transformers' numpy STFT (centred, reflect-padded, magnitude, Slaney mel, natural
    # log with floor 1e-5), computed in float64; ours runs in float32: 1e-4 absolute on log values.
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_waveform_levels_as_audioldm_prepares_them() -> None:
    wave = torch.stack([0.1 + 0.2 * torch.sin(torch.arange(800) / 7.0), torch.zeros(800)])
    out = normalize_waveform(wave)
    # AudioLDM's normalize_wav: mean removed, then peak 0.5; silence stays zero.
    assert abs(float(out[0].mean())) < 1e-6 and float(out[0].abs().max()) == pytest.approx(0.5)
    assert torch.equal(out[1], torch.zeros(800))
