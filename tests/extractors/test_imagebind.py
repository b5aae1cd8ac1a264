"""ImageBind port against ImageBind's own model code.

Reference: ``../shared/data/fixtures/imagebind_tiny_reference.safetensors`` (+ ``.json``):
``ImageBindModel(**config)`` of PyPI ``imagebind-unofficial==0.1.1`` (facebookresearch/ImageBind's
``imagebind/models``) in a reduced configuration with seeded random weights under the official
key names, run in eval mode on seeded inputs (see that folder's README). A port that reproduces
those outputs from those weights loads ``imagebind_huge.pth`` correctly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tavgbench.errors import TavgbenchError, WeightsError
from tavgbench.extractors.imagebind import (
    CLIP_MEAN,
    CLIP_STD,
    HUGE_CONFIG,
    ImageBindEncoders,
    ImageBindExtractor,
    convert_imagebind,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fixtures"
WEIGHTS = FIXTURES / "imagebind_tiny_reference.safetensors"
CONFIG = FIXTURES / "imagebind_tiny_reference.json"
OTHER_MODALITIES = ("depth", "thermal", "imu")


@pytest.fixture(scope="module")
def fixture() -> tuple[dict[str, torch.Tensor], dict]:
    if not WEIGHTS.exists() or not CONFIG.exists():
        pytest.skip(f"{WEIGHTS} is absent (shared data lies beside the repository)")
    return load_file(WEIGHTS), json.loads(CONFIG.read_text())["config"]


@pytest.fixture(scope="module")
def official_state(fixture) -> dict[str, torch.Tensor]:
    """The full official state dict of the reference model, all six modalities."""
    tensors, _ = fixture
    return {k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")}


@pytest.fixture(scope="module")
def checkpoint(official_state, tmp_path_factory) -> Path:
    """The reference weights saved as imagebind_huge.pth is: a torch.save of the state dict."""
    path = tmp_path_factory.mktemp("imagebind") / "imagebind_tiny.pth"
    torch.save(official_state, path)
    return path


@pytest.fixture(scope="module")
def extractor(fixture, checkpoint) -> ImageBindExtractor:
    _, config = fixture
    return ImageBindExtractor.from_state_dict(convert_imagebind(checkpoint), config=config)


def test_converter_keeps_vision_audio_text(official_state, checkpoint) -> None:
    converted = convert_imagebind(checkpoint)
    dropped = {k for k in official_state if k.split(".")[1] in OTHER_MODALITIES}
    assert dropped, "the fixture should hold the other modalities too"
    assert set(converted) == set(official_state) - dropped
    for key, tensor in converted.items():
        assert torch.equal(tensor, official_state[key])


def test_every_official_key_is_ours(fixture, official_state) -> None:
    _, config = fixture
    model = ImageBindEncoders.from_config(config)
    ours = model.state_dict()
    expected = {k for k in official_state if k.split(".")[1] not in OTHER_MODALITIES}
    assert set(ours) == expected
    for key in expected:
        assert ours[key].shape == official_state[key].shape, key


@pytest.mark.parametrize("modality", ["vision", "audio", "text"])
def test_outputs_match_reference_model(fixture, extractor, modality: str) -> None:
    # Reference: ImageBindModel.forward on the same inputs (vision L2-normalised; audio
    # normalised, x20, averaged over its 3 clips; text normalised, x learned scale).
    # Tolerance 1e-5 absolute (measured: 0.0 for all three on torch 2.13 CPU).
    tensors, _ = fixture
    with torch.inference_mode():
        out = extractor.model({modality: tensors[f"input.{modality}"]})[modality]
    expected = tensors[f"output.{modality}"]
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= 1e-5


def test_extractor_methods_on_model_inputs(fixture, extractor) -> None:
    # Same reference and tolerance, through the extractor's batching (batch of 2 of 3 items).
    tensors, _ = fixture
    extractor.batch_size = 2
    try:
        frames = extractor.embed_frames([tensors["input.vision"]], preprocess=False)
        text = extractor.embed_text(tensors["input.text"])
    finally:
        extractor.batch_size = 32
    assert len(frames) == 1 and frames[0].dtype == np.float32
    np.testing.assert_allclose(frames[0], tensors["output.vision"].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(text, tensors["output.text"].numpy(), rtol=0, atol=1e-5)


def _reference_preprocess(frame: np.ndarray) -> torch.Tensor:
    """torchvision's Resize(224, BICUBIC) / CenterCrop / ToTensor / Normalize on a PIL image."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow is the resize reference")
    height, width = frame.shape[:2]
    short, long = min(height, width), max(height, width)
    new_long = int(224 * long / short)
    new_w, new_h = (224, new_long) if width <= height else (new_long, 224)
    resized = np.asarray(
        image_module.fromarray(frame).resize((new_w, new_h), image_module.Resampling.BICUBIC)
    )
    top, left = round((new_h - 224) / 2.0), round((new_w - 224) / 2.0)
    crop = torch.from_numpy(resized[top : top + 224, left : left + 224].copy())
    x = crop.permute(2, 0, 1).float().div(255)
    return (x - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)


def test_embed_frames_preprocesses_like_the_reference(extractor) -> None:
    # Reference: the PIL path of ImageBind's data.py / JavisDiT's AVHScore dataset, then the
    # model. Tolerance 1e-5 absolute on unit-norm embeddings.
    rng = np.random.default_rng(0)
    clips = [
        rng.integers(0, 256, (3, 120, 200, 3), dtype=np.uint8),
        rng.integers(0, 256, (1, 300, 240, 3), dtype=np.uint8),
    ]
    out = extractor.embed_frames(clips)
    assert [o.shape for o in out] == [(3, 24), (1, 24)]
    for clip, emb in zip(clips, out, strict=True):
        images = torch.stack([_reference_preprocess(f) for f in clip])
        with torch.inference_mode():
            expected = extractor.model.encode("vision", images)
        np.testing.assert_allclose(emb, expected.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    stacked = extractor.embed_frames(np.stack([clips[0], clips[0]]))
    np.testing.assert_allclose(stacked[1], out[0], rtol=0, atol=1e-6)


def test_embed_audio_averages_scaled_clip_embeddings(extractor) -> None:
    # Reference: ImageBindModel.forward's clip handling (normalise, x20, then the mean of the 3
    # clips), applied by hand to the clips of tavgbench's ImageBind audio front end.
    # Tolerance 1e-5 absolute.
    audio = pytest.importorskip("tavgbench.extractors.audio", reason="audio front end absent")
    rng = np.random.default_rng(1)
    waves = [
        (0.1 * rng.standard_normal(int(5.3 * 22050))).astype(np.float32),
        (0.1 * rng.standard_normal(int(1.5 * 22050))).astype(np.float32),
    ]
    out = extractor.embed_audio(waves, 22050)
    assert out.shape == (2, 24) and out.dtype == np.float32
    for wave, emb in zip(waves, out, strict=True):
        clips = audio.imagebind_audio_clips(torch.from_numpy(wave), 22050)
        with torch.inference_mode():
            per_clip = extractor.model.encode("audio", clips)
        np.testing.assert_allclose(np.linalg.norm(per_clip.numpy(), axis=1), 20.0, rtol=1e-5)
        np.testing.assert_allclose(emb, per_clip.mean(0).numpy(), rtol=0, atol=1e-5)


def test_huge_config_parameter_counts() -> None:
    # Reference: parameter counts from the architecture's formulas (not from our modules).
    with torch.device("meta"):
        model = ImageBindEncoders.from_config(None)
    counts = {m: 0 for m in ("vision", "audio", "text")}
    for name, param in model.named_parameters():
        counts[name.split(".")[1]] += param.numel()

    def blocks(dim: int, n: int, bias_kv: bool) -> int:
        attn = 4 * dim * dim + 4 * dim + (2 * dim if bias_kv else 0)
        mlp = 8 * dim * dim + 5 * dim
        return n * (attn + mlp + 4 * dim)

    out = HUGE_CONFIG["out_embed_dim"]
    v, a, t = 1280, 768, 1024
    vision = v * 3 * 2 * 14 * 14 + v + 257 * v + 2 * v + blocks(v, 32, False) + 2 * v + v * out
    audio = a * 16 * 16 + 2 * a + a + 229 * a + blocks(a, 12, True) + 2 * a + a * out
    text = 49408 * t + 77 * t + blocks(t, 24, False) + 2 * t + t * out + 1
    assert counts == {"vision": vision, "audio": audio, "text": text}
    assert counts == {"vision": 632_829_440, "audio": 86_235_648, "text": 354_032_641}


def test_from_config_rejects_unknown_and_ignores_other_modalities() -> None:
    with torch.device("meta"):
        model = ImageBindEncoders.from_config({"imu_num_blocks": 3, "audio_drop_path": 0.1})
    assert len(model.modality_trunks["vision"].blocks) == 32
    with pytest.raises(ValueError, match="unknown ImageBind configuration keys: vision_width"):
        ImageBindEncoders.from_config({"vision_width": 3})


def test_wrong_weights_raise_weights_error(fixture, official_state, tmp_path) -> None:
    _, config = fixture
    state = {k: v for k, v in official_state.items() if k.split(".")[1] not in OTHER_MODALITIES}
    del state["modality_trunks.audio.blocks.0.attn.bias_k"]
    with pytest.raises(WeightsError, match="do not match"):
        ImageBindExtractor.from_state_dict(state, config=config)
    with pytest.raises(WeightsError, match="do not match"):
        ImageBindExtractor.from_state_dict(official_state, config=None)  # tiny weights, huge model
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="garbage.pth"):
        convert_imagebind(garbage)
    other = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(WeightsError, match="not an ImageBind state dict"):
        convert_imagebind(other)


def test_options_and_protocol(official_state, fixture) -> None:
    _, config = fixture
    state = {k: v for k, v in official_state.items() if k.split(".")[1] not in OTHER_MODALITIES}
    with pytest.raises(TavgbenchError, match="bfloat16 needs a CUDA device"):
        ImageBindExtractor.from_state_dict(state, config=config, dtype="bfloat16")
    with pytest.raises(TavgbenchError, match="float16"):
        ImageBindExtractor.from_state_dict(state, config=config, dtype="float16")
    ex = ImageBindExtractor.from_state_dict(state, config=config, weights_sha256="ab")
    described = ex.describe()
    assert described["name"] == "imagebind" and described["weights"] == "imagebind-huge"
    assert described["weights_sha256"] == "ab" and described["protocol"]["dtype"] == "float32"
    assert math.isclose(
        ex.model.modality_postprocessors["audio"][1].log_logit_scale.exp().item(),
        20.0,
        rel_tol=1e-6,
    )
