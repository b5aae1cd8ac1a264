"""Audio front ends against torchaudio's outputs (shared fixture) and kaldi-native-fbank.

The fixture ``torchaudio_torchvision_reference.npz`` was produced by running torchaudio 2.11
itself (see the fixtures README); it lives in the shared data folder beside the repository.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from tavgbench.errors import TavgbenchError
from tavgbench.extractors.audio import (
    AudioTooShortError,
    imagebind_audio_clips,
    kaldi_fbank,
    resample,
    vggish_examples,
    vggish_log_mel,
)

FIXTURE = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "fixtures"
    / "torchaudio_torchvision_reference.npz"
)
RATES = (8000, 11025, 22050, 32000, 44100, 48000, 96000)
IMAGEBIND_MEAN, IMAGEBIND_STD = -4.268, 9.138


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    if not FIXTURE.exists():
        pytest.skip(f"torchaudio reference fixture not found at {FIXTURE}")
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


def _test_signal(num_samples: int, rate: int, seed: int = 0) -> np.ndarray:
    """Tones, a chirp and noise: energy across the band, deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / rate
    signal = (
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * 2500 * t * (1 + t / 4))
        + 0.05 * rng.standard_normal(num_samples)
    )
    return signal.astype(np.float32)


# --- resample ------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", RATES)
def test_resample_matches_torchaudio(reference: dict[str, np.ndarray], rate: int) -> None:
    # Reference: torchaudio.functional.resample(x[None], rate, 16000) defaults; tolerance 1e-5
    # absolute (measured: 0.0, bit-identical, for all seven rates).
    x = torch.from_numpy(reference[f"resample_in_{rate}"])
    expected = reference[f"resample_out_{rate}_to_16000"]
    out = resample(x, rate, 16000)
    assert out.dtype == torch.float32
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-5)


def test_resample_float64_batched_and_identity() -> None:
    x = torch.from_numpy(_test_signal(2 * 44100, 44100)).reshape(2, 44100)
    batched = resample(x.double()[None], 44100, 16000)
    assert batched.shape == (1, 2, 16000) and batched.dtype == torch.float64
    # float64 kernels vs float32 kernels: same algorithm, float32 rounding only.
    single = resample(x[1], 44100, 16000)
    np.testing.assert_allclose(batched[0, 1].numpy(), single.numpy(), rtol=0, atol=1e-5)
    assert resample(x, 16000, 16000) is x


def test_resample_length_rule_uses_float32_quotient() -> None:
    # torchaudio computes ceil(torch.as_tensor(new * length / orig)) in float32: a length whose
    # exact quotient is just above an integer (here k + 1/441, k > 2**17) rounds to k.
    length = next(n for n in range(362_000, 370_000) if (160 * n) % 441 == 1)
    exact = 160 * length / 441
    assert math.ceil(exact) == math.floor(exact) + 1
    out = resample(torch.zeros(length), 44100, 16000)
    assert out.shape[-1] == math.floor(exact)
    # A quotient well away from an integer keeps the exact ceiling.
    assert resample(torch.zeros(27562), 11025, 16000).shape[-1] == 40000


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="integers"):
        resample(torch.zeros(10), 44100.5, 16000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        resample(torch.zeros(10), 0, 16000)
    with pytest.raises(TypeError):
        resample(torch.zeros(10, dtype=torch.int16), 8000, 16000)


# --- kaldi fbank ---------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [128, 64])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_kaldi_fbank_matches_torchaudio(
    reference: dict[str, np.ndarray], index: int, bins: int
) -> None:
    # Reference: torchaudio.compliance.kaldi.fbank(x - x.mean(), ImageBind settings) at 128 and
    # 64 bins; tolerance 1e-3 absolute (measured: 0.0, bit-identical).
    x = torch.from_numpy(reference[f"fbank_in_{index}"])
    expected = reference[f"fbank{bins}_out_{index}"]
    out = kaldi_fbank(x - x.mean(), num_mel_bins=bins)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-3)


def _kaldi_native(x: np.ndarray, *, window: str, snip_edges: bool, use_energy: bool) -> np.ndarray:
    knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank is not installed")
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = 16000
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = window
    opts.frame_opts.snip_edges = snip_edges
    opts.mel_opts.num_bins = 64
    opts.use_energy = use_energy
    opts.htk_compat = True
    # torchaudio's defaults (kaldi-native-fbank's own energy floor is 0).
    opts.energy_floor = 1.0
    opts.raw_energy = True
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(16000, x.tolist())
    fbank.input_finished()
    return np.stack([fbank.get_frame(i) for i in range(fbank.num_frames_ready)])


@pytest.mark.parametrize(
    ("window", "snip_edges", "use_energy"),
    [
        ("hanning", True, False),
        ("hanning", False, False),
        ("povey", True, False),
        ("povey", False, True),
    ],
)
def test_kaldi_fbank_matches_kaldi_native_fbank(
    reference: dict[str, np.ndarray], window: str, snip_edges: bool, use_energy: bool
) -> None:
    # Reference: PyPI kaldi-native-fbank (C++ Kaldi port) at 64 bins, which it accepts;
    # tolerance 5e-4 absolute (measured max 4.3e-4 over the three fixture inputs: its float32
    # FFT and filter arithmetic differ from torch's).
    for index in range(3):
        x = reference[f"fbank_in_{index}"]
        x = x - x.mean()
        expected = _kaldi_native(x, window=window, snip_edges=snip_edges, use_energy=use_energy)
        out = kaldi_fbank(
            torch.from_numpy(x),
            num_mel_bins=64,
            window_type=window,
            snip_edges=snip_edges,
            use_energy=use_energy,
        )
        assert out.shape == expected.shape
        np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=5e-4)


def test_kaldi_fbank_128_bins_has_empty_filters() -> None:
    # 128 filters from 20 Hz at 31.25 Hz FFT resolution: some low filters cover no FFT bin and
    # give log(float32 eps), as torchaudio does (kaldi-native-fbank refuses this setting).
    out = kaldi_fbank(torch.from_numpy(_test_signal(16000, 16000)), num_mel_bins=128)
    assert out.shape == (98, 128)
    floor = math.log(torch.finfo(torch.float32).eps)
    empty = np.all(np.isclose(out.numpy(), floor), axis=0)
    assert empty.any() and not empty[64:].any()


def test_kaldi_fbank_errors() -> None:
    with pytest.raises(AudioTooShortError, match="fewer than one"):
        kaldi_fbank(torch.zeros(399))
    assert issubclass(AudioTooShortError, TavgbenchError)
    with pytest.raises(ValueError, match="window_type"):
        kaldi_fbank(torch.zeros(800), window_type="hann")
    with pytest.raises(ValueError, match="1-D"):
        kaldi_fbank(torch.zeros(1, 800))


# --- ImageBind clips -----------------------------------------------------------------------


def _imagebind_expected_from_fbank(fbank: np.ndarray, target_length: int = 204) -> np.ndarray:
    image = np.zeros((fbank.shape[1], target_length), dtype=np.float32)
    frames = min(target_length, fbank.shape[0])
    image[:, :frames] = fbank[:frames].T
    return (image - np.float32(IMAGEBIND_MEAN)) / np.float32(IMAGEBIND_STD)


@pytest.mark.parametrize("index", [0, 2])
def test_imagebind_clips_short_audio_matches_torchaudio(
    reference: dict[str, np.ndarray], index: int
) -> None:
    # Audio of at most 2 s: ImageBind's three clips all start at 0 and hold the whole audio;
    # each is torchaudio's fbank (fixture) padded to 204 frames and normalised. Tolerance 1e-4
    # (measured 0.0 for clip 0; 5.9e-5 for clips 1-2, which subtract the ~1e-9 mean left by the
    # first clip's in-place subtraction, as the reference's later clips do).
    x = torch.from_numpy(reference[f"fbank_in_{index}"])
    clips = imagebind_audio_clips(x, 16000)
    assert clips.shape == (3, 1, 128, 204) and clips.dtype == torch.float32
    expected = _imagebind_expected_from_fbank(reference[f"fbank128_out_{index}"])
    for clip in clips:
        np.testing.assert_allclose(clip[0].numpy(), expected, rtol=0, atol=1e-4)


def _imagebind_reference_clips(audio: torch.Tensor, rate: int = 16000) -> list[torch.Tensor]:
    """The reference loop transcribed: Fraction clip starts, int() slicing, in-place means."""
    audio = audio.clone()
    duration = Fraction(2)
    max_start = Fraction(max(audio.numel() / rate - duration, 0))
    spacing = Fraction(max_start, 3)
    images = []
    for k in range(3):
        start = spacing * k
        view = audio[int(start * rate) : int((start + duration) * rate)]
        view -= view.mean()
        fbank = kaldi_fbank(view, num_mel_bins=128).T
        fbank = torch.nn.functional.pad(fbank, (0, max(0, 204 - fbank.shape[1])))[:, :204]
        images.append((fbank - IMAGEBIND_MEAN) / IMAGEBIND_STD)
    return images


def test_imagebind_clip_placement_long_audio() -> None:
    # 12 s: clips start at 0, 10/3 s and 20/3 s (samples 0, 53333, 106666) and do not overlap,
    # so each equals an independent fbank of its slice.
    x = torch.from_numpy(_test_signal(12 * 16000, 16000)) + 0.2
    clips = imagebind_audio_clips(x, 16000)
    for k, begin in enumerate((0, 53333, 106666)):
        piece = x[begin : begin + 32000]
        fbank = kaldi_fbank(piece - piece.mean(), num_mel_bins=128).numpy()
        expected = _imagebind_expected_from_fbank(fbank)
        np.testing.assert_allclose(clips[k, 0].numpy(), expected, rtol=0, atol=1e-5)


def test_imagebind_overlapping_clips_keep_in_place_mean_semantics() -> None:
    # 3.7 s with a DC offset: clips overlap and the reference's in-place mean subtraction on
    # slice views leaks into later clips (here up to 0.86 in normalised units against clips
    # mean-subtracted independently); compare with the transcribed loop (same fbank).
    x = torch.from_numpy(_test_signal(59200, 16000)) + 0.3
    original = x.clone()
    clips = imagebind_audio_clips(x, 16000)
    assert torch.equal(x, original), "the caller's waveform must not be modified"
    for k, expected in enumerate(_imagebind_reference_clips(x)):
        np.testing.assert_allclose(clips[k, 0].numpy(), expected.numpy(), rtol=0, atol=1e-6)


def test_imagebind_clips_resample_first() -> None:
    x = torch.from_numpy(_test_signal(3 * 44100, 44100))
    direct = imagebind_audio_clips(x, 44100)
    via_16k = imagebind_audio_clips(resample(x, 44100, 16000), 16000)
    np.testing.assert_allclose(direct.numpy(), via_16k.numpy(), rtol=0, atol=1e-6)


def test_imagebind_clips_too_short() -> None:
    with pytest.raises(AudioTooShortError, match="25 ms"):
        imagebind_audio_clips(torch.zeros(399), 16000)
    assert imagebind_audio_clips(torch.randn(400), 16000).shape == (3, 1, 128, 204)


# --- VGGish front end (reference comparisons are in test_vggish.py) -----------------------


def test_vggish_framing_counts_and_short_clips() -> None:
    x = torch.from_numpy(_test_signal(40000, 16000))
    assert vggish_log_mel(x, 16000).shape == (1 + (40000 - 400) // 160, 64)
    assert vggish_log_mel(x[:399], 16000).shape == (0, 64)
    # audioldm: 96-frame examples need 400 + 95 * 160 = 15600 samples.
    assert vggish_examples(x, 16000).shape == (2, 1, 96, 64)
    assert vggish_examples(x[:15600], 16000).shape == (1, 1, 96, 64)
    with pytest.raises(AudioTooShortError, match="15600 samples"):
        vggish_examples(x[:15599], 16000)
    # google: 1 s windows every 0.5 s.
    assert vggish_examples(x, 16000, "google").shape == (1 + (40000 - 16000) // 8000, 1, 96, 64)
    assert vggish_examples(x[:16000], 16000, "google").shape == (1, 1, 96, 64)
    with pytest.raises(AudioTooShortError, match="16000 samples"):
        vggish_examples(x[:15999], 16000, "google")
    with pytest.raises(ValueError, match="protocol"):
        vggish_examples(x, 16000, "fadtk")  # type: ignore[arg-type]


def test_vggish_google_windows_are_log_mel_slices() -> None:
    # Window k of the google protocol starts at sample 8000 k = frame 50 k of the whole log-mel;
    # its loudness normalisation divides by max(0.1, max(x)).
    x = torch.from_numpy(_test_signal(36000, 16000)) * 0.05
    examples = vggish_examples(x, 16000, "google")
    peak = max(0.1, float(x.max()))
    for k in range(examples.shape[0]):
        window = x[8000 * k : 8000 * k + 16000].double() / peak
        expected = vggish_log_mel(window, 16000)[:96]
        np.testing.assert_allclose(examples[k, 0].numpy(), expected.numpy(), rtol=0, atol=1e-5)


def test_vggish_resamples_to_16k() -> None:
    x = torch.from_numpy(_test_signal(2 * 48000, 48000))
    direct = vggish_log_mel(x, 48000)
    via_16k = vggish_log_mel(resample(x.double(), 48000, 16000), 16000)
    np.testing.assert_allclose(direct.numpy(), via_16k.numpy(), rtol=0, atol=1e-6)
