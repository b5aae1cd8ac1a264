"""Audio front ends, torch only: resampling, Kaldi fbank, ImageBind clips, VGGish log-mel.

Each function reproduces the library that a metric's reference implementation calls, so that
tavgbench needs neither torchaudio, librosa nor resampy at run time:

* :func:`resample`: ``torchaudio.functional.resample`` with its defaults (windowed-sinc,
  Hann window, 6 zero crossings, rolloff 0.99).
* :func:`kaldi_fbank`: ``torchaudio.compliance.kaldi.fbank`` (which ImageBind calls).
* :func:`imagebind_audio_clips`: ImageBind's ``imagebind/data.py``
  ``load_and_transform_audio_data`` with its defaults, including pytorchvideo's
  ``ConstantClipsPerVideoSampler`` clip placement.
* :func:`vggish_log_mel` and :func:`vggish_examples`: the AudioSet VGGish input pipeline
  (TF ``research/audioset/vggish/mel_features.py`` and ``vggish_input.py``, shipped unchanged by
  torchvggish 0.2), in the two framings used for FAD.

Time is always on the last dimension; waveforms are float tensors in [-1, 1].
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from tavgbench.errors import TavgbenchError

__all__ = [
    "VGGISH_EXAMPLE_FRAMES",
    "VGGISH_SAMPLE_RATE",
    "AudioTooShortError",
    "VGGishProtocol",
    "imagebind_audio_clips",
    "kaldi_fbank",
    "resample",
    "vggish_examples",
    "vggish_log_mel",
]

#: Sample rate VGGish was trained at (``vggish_params.SAMPLE_RATE``).
VGGISH_SAMPLE_RATE = 16000
#: Frames of 10 ms per VGGish example (``vggish_params.NUM_FRAMES``): 0.96 s.
VGGISH_EXAMPLE_FRAMES = 96

VGGishProtocol = Literal["audioldm", "google"]

# numeric_limits<float>::epsilon(): Kaldi's floor before every log, whatever the dtype.
_KALDI_EPSILON = float(torch.finfo(torch.float32).eps)
_KALDI_WINDOWS = ("hanning", "povey", "hamming", "rectangular", "blackman")

# VGGish log-mel constants (vggish_params.py).
_VGGISH_WINDOW = 400  # 25 ms at 16 kHz
_VGGISH_HOP = 160  # 10 ms
_VGGISH_FFT = 512  # next power of two above the window
_VGGISH_MEL_BANDS = 64
_VGGISH_MEL_MIN_HZ = 125.0
_VGGISH_MEL_MAX_HZ = 7500.0
_VGGISH_LOG_OFFSET = 0.01
# google-research frechet_audio_distance: 1 s windows (SAMPLE_RATE samples) every 8000 samples
# (create_embeddings_main.py --model_step_size default), loudness floor 0.1 (= -20 dB).
_GOOGLE_WINDOW = VGGISH_SAMPLE_RATE
_GOOGLE_STEP = 8000
_GOOGLE_MIN_PEAK = 0.1


class AudioTooShortError(TavgbenchError):
    """A waveform is too short for the analysis a metric needs (no frame or no example fits)."""


# ---------------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------------


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample along the last dimension exactly as ``torchaudio.functional.resample`` does.

    Band-limited interpolation with a windowed-sinc kernel (``sinc_interp_hann``,
    ``lowpass_filter_width=6``, ``rolloff=0.99``): both rates are divided by their gcd, one
    polyphase kernel per output phase is evaluated in the waveform's dtype and applied as a strided
    ``conv1d`` over the zero-padded input. The output has
    ``ceil(new_freq * length / orig_freq)`` samples, with torchaudio's quirk of evaluating that
    quotient in float32 (so, for long inputs, a quotient within float32 rounding of an integer
    gives that integer).

    Args:
        waveform: float32 or float64 tensor ``[..., time]``.
        orig_freq: its sample rate in Hz (a positive integer).
        new_freq: the wanted sample rate in Hz (a positive integer).

    Returns:
        ``[..., new_time]`` in the input dtype; the input itself when the rates are equal.

    Example:
        >>> resample(torch.zeros(44100), 44100, 16000).shape
        torch.Size([16000])
    """
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq:
        raise ValueError(f"sample rates must be integers, got {orig_freq} and {new_freq}")
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} and {new_freq}")
    if not waveform.is_floating_point():
        raise TypeError(f"resample needs a floating point waveform, got {waveform.dtype}")
    orig_freq, new_freq = int(orig_freq), int(new_freq)
    if orig_freq == new_freq:
        return waveform

    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    kernel, width = _sinc_resample_kernel(orig, new, waveform.dtype, str(waveform.device))

    shape = waveform.shape
    length = shape[-1]
    if length == 0:
        return waveform.new_zeros((*shape[:-1], 0))
    flat = waveform.reshape(-1, length)
    padded = F.pad(flat, (width, width + orig))
    # One output channel per phase, stride orig: channel j of step s is output sample s*new + j.
    phases = F.conv1d(padded[:, None], kernel, stride=orig)
    out = phases.transpose(1, 2).reshape(flat.shape[0], -1)
    # torchaudio: torch.ceil(torch.as_tensor(new * length / orig)), i.e. in float32.
    target_length = math.ceil(float(np.float32(new * length / orig)))
    return out[:, :target_length].reshape(*shape[:-1], -1)


@lru_cache(maxsize=32)
def _sinc_resample_kernel(
    orig: int, new: int, dtype: torch.dtype, device: str
) -> tuple[torch.Tensor, int]:
    """Polyphase windowed-sinc kernels ``[new, 1, 2*width + orig]`` for gcd-reduced rates.

    Output sample j of each block of ``new`` sits at time ``-j/new`` relative to the kernel
    origin; the kernel tap at input offset ``i/orig`` is ``sinc`` of the distance (in units of the
    cutoff ``rolloff * min(orig, new)``) times a Hann window spanning ``lowpass_filter_width``
    zero crossings on each side, scaled by ``cutoff / orig`` for unit DC gain.
    """
    lowpass_filter_width = 6
    cutoff = min(orig, new) * 0.99
    width = math.ceil(lowpass_filter_width * orig / cutoff)
    # Evaluated in the waveform's dtype, as torchaudio does, so float32 kernels round the same way.
    taps = torch.arange(-width, width + orig, dtype=dtype, device=device)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype, device=device)[:, None, None] / new + taps
    t = (t * cutoff).clamp(-lowpass_filter_width, lowpass_filter_width)
    # Operation order as torchaudio's, so that float32 kernels agree to the last bit.
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    return sinc * (window * (cutoff / orig)), width


# ---------------------------------------------------------------------------------------------
# Kaldi fbank
# ---------------------------------------------------------------------------------------------


def kaldi_fbank(
    waveform_1d: torch.Tensor,
    *,
    sample_frequency: float = 16000.0,
    num_mel_bins: int = 128,
    frame_length: float = 25.0,
    frame_shift: float = 10.0,
    window_type: str = "hanning",
    dither: float = 0.0,
    htk_compat: bool = True,
    use_energy: bool = False,
    preemphasis_coefficient: float = 0.97,
    remove_dc_offset: bool = True,
    round_to_power_of_two: bool = True,
    snip_edges: bool = True,
    low_freq: float = 20.0,
    high_freq: float = 0.0,
) -> torch.Tensor:
    """Log mel filterbank energies as ``torchaudio.compliance.kaldi.fbank`` computes them.

    Per frame: optional dither, removal of the frame's mean, pre-emphasis
    ``x[j] - c * x[max(j-1, 0)]``, window (symmetric Hann for ``"hanning"``, Hann^0.85 for
    ``"povey"``), zero padding to the next power of two, power spectrum, triangular mel filters
    (Kaldi mel scale ``1127 ln(1 + f/700)``, filters on the FFT bins below Nyquist), then
    ``log(max(energy, float32 eps))``. Unlike Kaldi and kaldi-native-fbank, this does not refuse
    filter counts whose narrowest filters cover no FFT bin (ImageBind's 128 bins at 16 kHz):
    those filters give ``log(eps)``, as in torchaudio.

    The defaults are ImageBind's settings; the remaining torchaudio options keep torchaudio's
    defaults (``energy_floor=1.0`` and raw energy for ``use_energy``, ``blackman_coeff=0.42``,
    no VTLN, no mean subtraction).

    Args:
        waveform_1d: mono waveform ``[samples]`` (float32 or float64).
        sample_frequency: its sample rate in Hz.
        num_mel_bins: number of triangular mel filters.
        frame_length: frame length in milliseconds.
        frame_shift: frame shift in milliseconds.
        window_type: ``"hanning"``, ``"povey"``, ``"hamming"``, ``"rectangular"``, ``"blackman"``.
        dither: standard deviation of Gaussian noise added to every frame (0 for none; non-zero
            values draw from torch's global generator).
        htk_compat: with ``use_energy``, put the energy last instead of first.
        use_energy: append the log frame energy as an extra column.
        preemphasis_coefficient: pre-emphasis coefficient in [0, 1].
        remove_dc_offset: subtract each frame's mean before pre-emphasis.
        round_to_power_of_two: zero-pad each frame to the next power of two for the FFT.
        snip_edges: keep only frames that fit in the signal; otherwise reflect at the edges and
            emit ``round(samples / shift)`` frames.
        low_freq: low edge of the first mel filter in Hz.
        high_freq: high edge of the last filter in Hz; zero or negative counts from Nyquist.

    Returns:
        ``[frames, num_mel_bins (+1 with use_energy)]`` in the input dtype.

    Raises:
        AudioTooShortError: the waveform is shorter than one frame.
    """
    if waveform_1d.dim() != 1:
        raise ValueError(f"kaldi_fbank takes a 1-D waveform, got shape {tuple(waveform_1d.shape)}")
    if not waveform_1d.is_floating_point():
        raise TypeError(f"kaldi_fbank needs a floating point waveform, got {waveform_1d.dtype}")
    if window_type not in _KALDI_WINDOWS:
        raise ValueError(f"window_type must be one of {_KALDI_WINDOWS}, got {window_type!r}")
    if not 0.0 <= preemphasis_coefficient <= 1.0:
        raise ValueError(
            f"preemphasis_coefficient must be in [0, 1], got {preemphasis_coefficient}"
        )
    if sample_frequency <= 0:
        raise ValueError(f"sample_frequency must be positive, got {sample_frequency}")
    dtype, device = waveform_1d.dtype, waveform_1d.device

    # Same expressions as torchaudio (int() of ms * rate * 0.001) so sizes agree to the sample.
    window_shift = int(sample_frequency * frame_shift * 0.001)
    window_size = int(sample_frequency * frame_length * 0.001)
    padded_size = _next_power_of_two(window_size) if round_to_power_of_two else window_size
    if window_shift <= 0 or window_size < 2:
        raise ValueError(f"frame_length {frame_length} ms / frame_shift {frame_shift} ms too small")
    if padded_size % 2:
        raise ValueError(f"the FFT size {padded_size} must be even: use round_to_power_of_two")
    if waveform_1d.numel() < window_size:
        raise AudioTooShortError(
            f"the waveform has {waveform_1d.numel()} samples, fewer than one "
            f"{frame_length} ms fbank frame ({window_size} samples at {sample_frequency:g} Hz)"
        )

    frames = _kaldi_frames(waveform_1d, window_size, window_shift, snip_edges)
    if dither != 0.0:
        frames = frames + torch.randn(frames.shape, dtype=dtype, device=device) * dither
    if remove_dc_offset:
        frames = frames - frames.mean(dim=1, keepdim=True)
    eps = torch.tensor(_KALDI_EPSILON, dtype=dtype, device=device)
    if use_energy:
        # torchaudio defaults raw_energy=True, energy_floor=1.0: energy before pre-emphasis,
        # floored at log(1.0) = 0.
        log_energy = torch.maximum(frames.pow(2).sum(1), eps).log().clamp_min(0.0)
    if preemphasis_coefficient != 0.0:
        previous = torch.cat((frames[:, :1], frames[:, :-1]), dim=1)
        frames = frames - preemphasis_coefficient * previous
    frames = frames * _kaldi_window(window_type, window_size, dtype, device)
    if padded_size != window_size:
        frames = F.pad(frames, (0, padded_size - window_size))

    power = torch.fft.rfft(frames).abs().pow(2.0)
    banks = _kaldi_mel_banks(
        num_mel_bins, padded_size, float(sample_frequency), low_freq, high_freq
    )
    banks = banks.to(device=device, dtype=dtype)
    # The filters cover FFT bins 0 .. padded/2 - 1; the Nyquist bin gets no weight.
    mel = power[:, : padded_size // 2] @ banks.T
    fbank = torch.maximum(mel, eps).log()
    if use_energy:
        energy = log_energy[:, None]
        fbank = torch.cat((fbank, energy) if htk_compat else (energy, fbank), dim=1)
    return fbank


def _next_power_of_two(x: int) -> int:
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def _kaldi_frames(
    waveform: torch.Tensor, window_size: int, window_shift: int, snip_edges: bool
) -> torch.Tensor:
    """``[frames, window_size]``; without snip_edges, Kaldi's mirror padding (edge sample kept)."""
    if snip_edges:
        return waveform.unfold(0, window_size, window_shift)
    num_samples = waveform.numel()
    num_frames = (num_samples + window_shift // 2) // window_shift
    pad = window_size // 2 - window_shift // 2
    reversed_waveform = waveform.flip(0)
    if pad > 0:
        extended = torch.cat((reversed_waveform[-pad:], waveform, reversed_waveform))
    else:
        extended = torch.cat((waveform[-pad:], reversed_waveform))
    return extended.unfold(0, window_size, window_shift)[:num_frames]


def _kaldi_window(
    window_type: str, size: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if window_type == "hanning":
        return torch.hann_window(size, periodic=False, dtype=dtype, device=device)
    if window_type == "povey":
        return torch.hann_window(size, periodic=False, dtype=dtype, device=device).pow(0.85)
    if window_type == "hamming":
        return torch.hamming_window(
            size, periodic=False, alpha=0.54, beta=0.46, dtype=dtype, device=device
        )
    if window_type == "rectangular":
        return torch.ones(size, dtype=dtype, device=device)
    blackman_coeff = 0.42
    n = torch.arange(size, dtype=dtype, device=device)
    a = 2 * math.pi / (size - 1)
    return blackman_coeff - 0.5 * torch.cos(a * n) + (0.5 - blackman_coeff) * torch.cos(2 * a * n)


@lru_cache(maxsize=16)
def _kaldi_mel_banks(
    num_bins: int, padded_size: int, sample_freq: float, low_freq: float, high_freq: float
) -> torch.Tensor:
    """Triangular filters ``[num_bins, padded_size // 2]`` on Kaldi's mel scale.

    Built in float32 with torchaudio's operation order whatever the waveform dtype: with 128
    filters at 16 kHz the lowest filters are narrower than an FFT bin, and whether a bin gets a
    tiny positive weight or exactly zero (then ``log(eps)``) depends on that rounding.
    """
    if num_bins <= 3:
        raise ValueError(f"num_mel_bins must be at least 4, got {num_bins}")
    nyquist = 0.5 * sample_freq
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(
            f"mel filter edges low_freq={low_freq} and high_freq={high_freq} do not fit "
            f"in 0..{nyquist} Hz (Nyquist)"
        )
    fft_bin_width = sample_freq / padded_size
    mel_low = 1127.0 * math.log(1.0 + low_freq / 700.0)
    mel_high = 1127.0 * math.log(1.0 + high_freq / 700.0)
    mel_delta = (mel_high - mel_low) / (num_bins + 1)

    index = torch.arange(num_bins, dtype=torch.float32)[:, None]
    left = mel_low + index * mel_delta
    center = mel_low + (index + 1.0) * mel_delta
    right = mel_low + (index + 2.0) * mel_delta
    bin_freqs = fft_bin_width * torch.arange(padded_size // 2, dtype=torch.float32)
    bin_mels = (1127.0 * (1.0 + bin_freqs / 700.0).log())[None, :]
    up = (bin_mels - left) / (center - left)
    down = (right - bin_mels) / (right - center)
    return torch.clamp_min(torch.minimum(up, down), 0.0)


# ---------------------------------------------------------------------------------------------
# ImageBind audio clips
# ---------------------------------------------------------------------------------------------


def imagebind_audio_clips(
    waveform: torch.Tensor,
    sample_rate: int,
    *,
    num_clips: int = 3,
    clip_duration: float = 2.0,
    target_rate: int = 16000,
    num_mel_bins: int = 128,
    target_length: int = 204,
    mean: float = -4.268,
    std: float = 9.138,
) -> torch.Tensor:
    """ImageBind's audio input for one clip, as ``load_and_transform_audio_data`` builds it.

    Steps, with the reference's exact arithmetic:

    1. Resample to ``target_rate`` (:func:`resample`, as torchaudio) unless already there.
    2. Clip placement of pytorchvideo's ``ConstantClipsPerVideoSampler``: with
       ``D = samples / target_rate`` (a Python float), ``max_start = Fraction(max(D - 2, 0))`` and
       clip ``k`` spans ``[k * max_start / num_clips, that + clip_duration)`` seconds, in exact
       fractions. The clips therefore start at 0, 1/3 and 2/3 of ``max_start`` and the last one
       ends before the audio does (not "evenly to the end"). Seconds become sample indices by
       ``int(t * target_rate)`` (truncation); a clip past the end is cut at the end.
    3. Per clip, in order: subtract the clip's mean **in place on the shared waveform**, as the
       reference's ``waveform -= waveform.mean()`` on a slice view does, so that where clips
       overlap (audio under 8 s) a later clip sees the earlier clips' offsets; then
       :func:`kaldi_fbank` (hanning, 25/10 ms, dither 0, 128 bins, snip_edges), transposed to
       ``[bins, frames]``, right-padded with zeros or cut to the first ``target_length`` frames,
       then ``(x - mean) / std`` (padding included, as torchvision's ``Normalize`` after the pad).

    A waveform under ``clip_duration`` gives ``num_clips`` copies of the whole waveform, padded.
    Multichannel files: the reference analyses the first channel only (torchaudio fbank's
    ``channel=-1``); pass the channel (or mix) that the metric's protocol names.

    Args:
        waveform: mono waveform ``[samples]``; computed in float32 like ``torchaudio.load``.
        sample_rate: its sample rate in Hz.
        num_clips: clips per audio (``clips_per_video``).
        clip_duration: clip length in seconds.
        target_rate: ImageBind's rate (16 kHz).
        num_mel_bins: fbank filters.
        target_length: fbank frames per clip after padding/cropping.
        mean: normalisation mean of the fbank values.
        std: normalisation standard deviation.

    Returns:
        float32 ``[num_clips, 1, num_mel_bins, target_length]``.

    Raises:
        AudioTooShortError: a clip is shorter than one 25 ms fbank frame.
    """
    if waveform.dim() != 1:
        raise ValueError(f"imagebind_audio_clips takes a 1-D waveform, got {tuple(waveform.shape)}")
    if num_clips < 1:
        raise ValueError(f"num_clips must be positive, got {num_clips}")
    audio = waveform.to(torch.float32)
    if sample_rate != target_rate:
        audio = resample(audio, sample_rate, target_rate)
    # A private copy: the in-place mean subtraction below must not reach the caller's tensor.
    audio = audio.clone()
    num_samples = audio.numel()

    duration = Fraction(clip_duration)
    audio_seconds = num_samples / target_rate
    # float - Fraction is a float in Python; pytorchvideo then takes Fraction() of it exactly.
    max_start = Fraction(max(audio_seconds - duration, 0))
    spacing = Fraction(max_start, num_clips)
    mean_t = torch.tensor(mean, dtype=torch.float32)
    std_t = torch.tensor(std, dtype=torch.float32)
    # The sampler also stops early once a start would pass max_start, which spacing * k with
    # k < num_clips never does: exactly num_clips clips.
    clips = []
    for k in range(num_clips):
        start = spacing * k
        begin = int(start * target_rate)
        end = int((start + duration) * target_rate)
        view = audio[begin:end]
        if view.numel() < int(target_rate * 25 * 0.001):
            raise AudioTooShortError(
                f"audio of {num_samples} samples at {target_rate} Hz gives ImageBind clip {k} "
                f"({begin}:{end}) fewer samples than one 25 ms fbank frame; the audio must be "
                "at least 25 ms long"
            )
        view -= view.mean()
        fbank = kaldi_fbank(
            view,
            sample_frequency=float(target_rate),
            num_mel_bins=num_mel_bins,
            frame_length=25.0,
            frame_shift=10.0,
            window_type="hanning",
            dither=0.0,
            htk_compat=True,
            use_energy=False,
        ).T
        frames = fbank.shape[1]
        if frames < target_length:
            fbank = F.pad(fbank, (0, target_length - frames))
        else:
            fbank = fbank[:, :target_length]
        clips.append((fbank[None] - mean_t) / std_t)
    return torch.stack(clips)


# ---------------------------------------------------------------------------------------------
# VGGish log-mel
# ---------------------------------------------------------------------------------------------


def vggish_log_mel(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """VGGish's log-mel spectrogram (``mel_features.log_mel_spectrogram`` with vggish_params).

    16 kHz mono; frames of 400 samples (25 ms) every 160 (10 ms), no padding, only whole frames;
    periodic Hann window; magnitude of a 512-point FFT; 64 triangular filters on the HTK mel scale
    (``1127 ln(1 + f/700)``) from 125 to 7500 Hz, evaluated at the 257 bin frequencies
    ``linspace(0, 8000, 257)`` with the DC bin zeroed; ``log(mel + 0.01)``. Computed in float64 as
    the NumPy reference is.

    Resampling differs from the references: TF VGGish, torchvggish and haoheliu/audioldm_eval
    (``metrics/fad.py``, which also reads files as int16) call ``resampy.resample`` (Kaiser "best"
    filter, rolloff ~0.948); we use :func:`resample` (torchaudio's Hann-windowed sinc, rolloff
    0.99), which keeps more of the top of the band. Measured on 3 s of tones plus noise from
    22.05, 44.1 and 48 kHz: median log-mel difference 5e-4, below 0.015 in the 48 bands under
    4.3 kHz, but a mean 0.03-0.15 in the six bands centred 6.2-7.2 kHz (max 0.48). At 16 kHz
    input neither resamples and the two agree to float rounding (1.2e-7).

    Args:
        waveform: mono waveform ``[samples]`` in [-1, 1].
        sample_rate: its sample rate in Hz.

    Returns:
        float32 ``[frames, 64]``, ``frames = 1 + (samples_16k - 400) // 160`` (0 when shorter
        than one frame).
    """
    audio = _vggish_mono_16k(waveform, sample_rate)
    return _vggish_log_mel_16k(audio).to(torch.float32)


def vggish_examples(
    waveform: torch.Tensor, sample_rate: int, protocol: VGGishProtocol = "audioldm"
) -> torch.Tensor:
    """VGGish input examples ``[n, 1, 96, 64]`` (float32) of one clip under a FAD protocol.

    ``"audioldm"`` (torchvggish / TF ``vggish_input.waveform_to_examples``, as used by
    haoheliu/audioldm_eval and gudgud96/frechet-audio-distance): the log-mel of the whole clip is
    cut into non-overlapping 96-frame (0.96 s) examples, the incomplete tail dropped; no loudness
    normalisation. A clip needs at least 400 + 95 * 160 = 15600 samples at 16 kHz (0.975 s).

    ``"google"`` (google-research ``frechet_audio_distance``): in ``audioset_model.py``
    ``AudioSetModel.extract_features`` first divides the whole clip by ``max(0.1, max(x))``
    (``normalize=True``, the signed maximum, not the absolute peak), then takes 1 s windows
    (16000 samples) starting every ``step_size`` samples, 8000 by default
    (``create_embeddings_main.py --model_step_size``), only windows that fit; each window's
    log-mel (98 frames) is framed into 96-frame examples with hop 96, i.e. its first 96 frames,
    one example per window. Since 8000 samples are exactly 50 hops, we compute the log-mel of the
    whole clip once and take frames ``[50 k, 50 k + 96)`` for window ``k``: the same numbers. The
    reference reads 16 kHz audio as is; we resample first, then normalise. A clip needs at least
    16000 samples at 16 kHz (1 s).

    Args:
        waveform: mono waveform ``[samples]`` in [-1, 1].
        sample_rate: its sample rate in Hz.
        protocol: ``"audioldm"`` or ``"google"``.

    Returns:
        float32 ``[n, 1, 96, 64]``, ``n >= 1``.

    Raises:
        AudioTooShortError: the clip yields no example (the references yield none or fail).
    """
    if protocol not in ("audioldm", "google"):
        raise ValueError(f"protocol must be 'audioldm' or 'google', got {protocol!r}")
    audio = _vggish_mono_16k(waveform, sample_rate)
    num_samples = audio.numel()
    if protocol == "audioldm":
        needed = _VGGISH_WINDOW + (VGGISH_EXAMPLE_FRAMES - 1) * _VGGISH_HOP
        hop = VGGISH_EXAMPLE_FRAMES
    else:
        needed = _GOOGLE_WINDOW
        hop = _GOOGLE_STEP // _VGGISH_HOP
    if num_samples < needed:
        raise AudioTooShortError(
            f"a clip of {num_samples} samples at 16 kHz ({num_samples / VGGISH_SAMPLE_RATE:.3f} s)"
            f" gives no VGGish example under FAD protocol {protocol!r}, which needs at least "
            f"{needed} samples ({needed / VGGISH_SAMPLE_RATE:.3f} s)"
        )
    if protocol == "audioldm":
        log_mel = _vggish_log_mel_16k(audio)
        count = (log_mel.shape[0] - VGGISH_EXAMPLE_FRAMES) // hop + 1
    else:
        log_mel = _vggish_log_mel_16k(audio / max(_GOOGLE_MIN_PEAK, float(audio.max())))
        # Only windows whose full second fits (the whole-clip log-mel may hold one more slice).
        count = (num_samples - _GOOGLE_WINDOW) // _GOOGLE_STEP + 1
    examples = log_mel.unfold(0, VGGISH_EXAMPLE_FRAMES, hop)[:count]  # [n, 64, 96]
    return examples.transpose(1, 2)[:, None].to(torch.float32).contiguous()


def _vggish_mono_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    if waveform.dim() != 1:
        raise ValueError(f"VGGish front end takes a 1-D waveform, got {tuple(waveform.shape)}")
    audio = waveform.to(torch.float64)
    if sample_rate != VGGISH_SAMPLE_RATE:
        audio = resample(audio, sample_rate, VGGISH_SAMPLE_RATE)
    return audio


def _vggish_log_mel_16k(audio: torch.Tensor) -> torch.Tensor:
    """float64 ``[frames, 64]`` log-mel of a float64 16 kHz waveform."""
    if audio.numel() < _VGGISH_WINDOW:
        return audio.new_zeros((0, _VGGISH_MEL_BANDS))
    frames = audio.unfold(0, _VGGISH_WINDOW, _VGGISH_HOP)
    window, mel_matrix = _vggish_window_and_mel(str(audio.device))
    magnitude = torch.fft.rfft(frames * window, n=_VGGISH_FFT).abs()
    return torch.log(magnitude @ mel_matrix + _VGGISH_LOG_OFFSET)


@lru_cache(maxsize=4)
def _vggish_window_and_mel(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Periodic Hann window ``[400]`` and mel matrix ``[257, 64]`` (float64)."""
    n = torch.arange(_VGGISH_WINDOW, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * math.pi / _VGGISH_WINDOW * n)

    def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 1127.0 * torch.log(1.0 + hz / 700.0)

    num_bins = _VGGISH_FFT // 2 + 1
    bin_mels = hz_to_mel(torch.linspace(0.0, VGGISH_SAMPLE_RATE / 2, num_bins, dtype=torch.float64))
    edges = torch.linspace(
        float(hz_to_mel(torch.tensor(_VGGISH_MEL_MIN_HZ, dtype=torch.float64))),
        float(hz_to_mel(torch.tensor(_VGGISH_MEL_MAX_HZ, dtype=torch.float64))),
        _VGGISH_MEL_BANDS + 2,
        dtype=torch.float64,
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mels[:, None] - lower) / (center - lower)
    falling = (upper - bin_mels[:, None]) / (upper - center)
    mel_matrix = torch.clamp_min(torch.minimum(rising, falling), 0.0)
    # HTK convention kept by mel_features.py: the DC bin feeds no band.
    mel_matrix[0] = 0.0
    return window.to(device), mel_matrix.to(device)
