"""VGGish front end and network against torchvggish 0.2 (PyPI) run in the test.

torchvggish 0.2 ships TF's ``mel_features.py`` / ``vggish_input.py`` and the VGG module with the
layout of ``vggish-10086976.pth``. Its ``vggish_input`` imports ``resampy`` and ``soundfile`` at
module level; when they are missing (they pull numba/llvmlite and libsndfile), placeholder modules
are registered for the import only. That is sound here because every reference call below gets
16 kHz input, where ``waveform_to_examples`` never calls ``resampy`` and nothing reads files; the
placeholders raise if called.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tavgbench.errors import WeightsError
from tavgbench.extractors.audio import AudioTooShortError, vggish_examples, vggish_log_mel
from tavgbench.extractors.vggish import VGGish, VGGishExtractor, convert_vggish


def _placeholder(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{name} placeholder called: the test must feed 16 kHz audio only")

    module.resample = unavailable  # type: ignore[attr-defined]
    module.read = unavailable  # type: ignore[attr-defined]
    return module


@pytest.fixture(scope="module")
def torchvggish() -> types.SimpleNamespace:
    if importlib.util.find_spec("torchvggish") is None:
        pytest.skip("torchvggish is not installed (pip install --no-deps torchvggish==0.2)")
    added = []
    for name in ("resampy", "soundfile"):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = _placeholder(name)
            added.append(name)
    try:
        modules = types.SimpleNamespace(
            input=importlib.import_module("torchvggish.vggish_input"),
            mel=importlib.import_module("torchvggish.mel_features"),
            model=importlib.import_module("torchvggish.torchvggish"),
        )
    finally:
        # Keep the placeholders out of every other test; torchvggish keeps its own reference.
        for name in added:
            del sys.modules[name]
    return modules


def _signal(num_samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    tone = 0.4 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    return (tone + 0.05 * rng.standard_normal(num_samples)).astype(np.float32)


def _he_init(module: nn.Module, seed: int) -> None:
    """Random weights with unit-scale activations, so a 1e-5 tolerance is meaningful."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(
                    torch.randn(layer.weight.shape, generator=generator) * (2 / fan_in) ** 0.5
                )
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def reference_model(torchvggish: types.SimpleNamespace) -> nn.Module:
    """torchvggish's VGG built from its classes (``vggish()`` would download the weights)."""
    model = torchvggish.model.VGG(torchvggish.model.make_layers(), postprocess=False)
    _he_init(model, seed=0)
    return model.eval()


@pytest.fixture(scope="module")
def reference_pth(reference_model: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vggish") / "vggish-random.pth"
    torch.save(reference_model.state_dict(), path)
    return path


def _reference_embeddings(model: nn.Module, examples: torch.Tensor) -> torch.Tensor:
    """torchvggish's forward with the final ReLU dropped, as FAD implementations do."""
    with torch.no_grad():
        x = model.features(examples)
        x = torch.transpose(torch.transpose(x, 1, 3), 1, 2).contiguous().flatten(1)
        return model.embeddings[:-1](x)


def test_log_mel_matches_mel_features(torchvggish: types.SimpleNamespace) -> None:
    # Reference: mel_features.log_mel_spectrogram with vggish_params (float64 NumPy); tolerance
    # 1e-4 absolute (measured 2.4e-7: our output is float32).
    x = _signal(50000, seed=1)
    expected = torchvggish.mel.log_mel_spectrogram(
        x.astype(np.float64),
        audio_sample_rate=16000,
        log_offset=0.01,
        window_length_secs=0.025,
        hop_length_secs=0.010,
        num_mel_bins=64,
        lower_edge_hertz=125,
        upper_edge_hertz=7500,
    )
    out = vggish_log_mel(torch.from_numpy(x), 16000)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("num_samples", [15600, 47999, 48000, 80000])
def test_audioldm_examples_match_waveform_to_examples(
    torchvggish: types.SimpleNamespace, num_samples: int
) -> None:
    # Reference: vggish_input.waveform_to_examples at 16 kHz (framing 96/96, tail dropped);
    # tolerance 1e-4 absolute (measured 0.0 after both cast to float32).
    x = _signal(num_samples, seed=2)
    expected = torchvggish.input.waveform_to_examples(x, 16000).detach().numpy()
    out = vggish_examples(torch.from_numpy(x), 16000, "audioldm")
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-4)


def test_short_clip_gives_no_reference_example(torchvggish: types.SimpleNamespace) -> None:
    # The reference silently returns zero examples below 15600 samples; we raise instead.
    x = _signal(15599, seed=3)
    assert torchvggish.input.waveform_to_examples(x, 16000).shape[0] == 0
    with pytest.raises(AudioTooShortError):
        vggish_examples(torch.from_numpy(x), 16000, "audioldm")


def _google_reference_examples(mel: types.ModuleType, samples: np.ndarray) -> np.ndarray:
    """google-research AudioSetModel.extract_features (normalize=True, step_size=8000)."""
    samples = samples.astype(np.float64)
    samples /= np.maximum(0.1, np.amax(samples))
    windows = [samples[i : i + 16000] for i in range(0, samples.shape[0] - 16000 + 1, 8000)]
    examples = []
    for window in windows:
        log_mel = mel.log_mel_spectrogram(
            window,
            audio_sample_rate=16000,
            log_offset=0.01,
            window_length_secs=0.025,
            hop_length_secs=0.010,
            num_mel_bins=64,
            lower_edge_hertz=125,
            upper_edge_hertz=7500,
        )
        examples.append(mel.frame(log_mel, window_length=96, hop_length=96))
    return np.concatenate(examples)[:, None].astype(np.float32)


@pytest.mark.parametrize(
    ("num_samples", "gain"), [(16000, 1.0), (39700, 0.5), (43999, 0.03), (56000, 0.8)]
)
def test_google_examples_match_extract_features(
    torchvggish: types.SimpleNamespace, num_samples: int, gain: float
) -> None:
    # Reference: google-research frechet_audio_distance audioset_model.extract_features, built
    # from torchvggish's mel_features (TF's file); gain 0.03 exercises the 0.1 loudness floor;
    # 39700 samples fit 3 whole windows while the whole-clip log-mel would hold a 4th slice.
    # Tolerance 1e-4 absolute (measured 0.0 after both cast to float32).
    x = _signal(num_samples, seed=4) * np.float32(gain)
    expected = _google_reference_examples(torchvggish.mel, x)
    out = vggish_examples(torch.from_numpy(x), 16000, "google")
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-4)


def test_architecture_matches_torchvggish(
    reference_model: nn.Module, reference_pth: Path, torchvggish: types.SimpleNamespace
) -> None:
    # Reference: torchvggish VGG (random He-scaled weights) without its final ReLU, loaded into
    # ours through convert_vggish from a torch.save'd .pth; tolerance 1e-5 absolute on outputs
    # up to ~10 (measured 0.0: same operations in the same order).
    model = VGGish()
    model.load_state_dict(convert_vggish(reference_pth), strict=True)
    model.eval()
    examples = vggish_examples(torch.from_numpy(_signal(64000, seed=5)), 16000)
    expected = _reference_embeddings(reference_model, examples)
    with torch.no_grad():
        out = model(examples)
    assert out.shape == (4, 128)
    assert expected.abs().max() > 0.5 and (expected < 0).any(), "pre-activation values expected"
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


def test_extractor_matches_reference_pipeline(
    reference_model: nn.Module, reference_pth: Path, torchvggish: types.SimpleNamespace
) -> None:
    # End to end at 16 kHz: waveform_to_examples + torchvggish VGG without the final ReLU, per
    # clip; tolerance 1e-5 absolute. Batch size 3 splits the 6 examples across batches.
    clips = [_signal(24000, seed=6), _signal(64000, seed=7), _signal(16000, seed=8)]
    extractor = VGGishExtractor.from_state_dict(
        convert_vggish(reference_pth), weights_sha256="abc", batch_size=3
    )
    per_clip = extractor.embed_audio_examples(clips, 16000)
    assert [e.shape for e in per_clip] == [(1, 128), (4, 128), (1, 128)]
    for clip, embeddings in zip(clips, per_clip, strict=True):
        examples = torchvggish.input.waveform_to_examples(clip, 16000).detach()
        expected = _reference_embeddings(reference_model, examples).numpy()
        assert embeddings.dtype == np.float32
        np.testing.assert_allclose(embeddings, expected, rtol=0, atol=1e-5)
    means = extractor.embed_audio(clips, 16000)
    assert means.shape == (3, 128) and means.dtype == np.float32
    np.testing.assert_allclose(means[1], per_clip[1].mean(axis=0), rtol=0, atol=1e-6)


def test_extractor_description_and_errors(reference_pth: Path) -> None:
    state = convert_vggish(reference_pth)
    extractor = VGGishExtractor.from_state_dict(state, protocol="google", weights_sha256="abc")
    described = extractor.describe()
    assert described["name"] == "vggish" and described["version"] == "1"
    assert described["weights"] == "vggish" and described["weights_sha256"] == "abc"
    assert described["protocol"]["protocol"] == "google"
    assert described["protocol"]["example_hop_seconds"] == 0.5
    assert extractor.embed_audio([], 16000).shape == (0, 128)
    with pytest.raises(AudioTooShortError, match="clip 1"):
        extractor.embed_audio([np.zeros(16000, np.float32), np.zeros(8000, np.float32)], 16000)
    with pytest.raises(ValueError, match="protocol"):
        VGGishExtractor.from_state_dict(state, protocol="fadtk")  # type: ignore[arg-type]


def test_convert_vggish_rejects_other_files(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 1, 3, 3)}, wrong)
    with pytest.raises(WeightsError, match="missing"):
        convert_vggish(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        convert_vggish(garbage)
