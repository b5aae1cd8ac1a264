"""Frame resizing against torchvision and Pillow outputs.

References: ``../shared/data/fixtures/torchaudio_torchvision_reference.npz`` (torchvision 0.26 and
Pillow run on ``image_in``, 256x320 uint8, resized to shorter side 224; see that folder's
README), and Pillow itself, run here when installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tavgbench.extractors.video import (
    center_crop,
    resize_bicubic_antialias,
    resize_bicubic_pil,
    resize_bilinear,
    resize_shorter_side,
    shorter_side_size,
)

FIXTURE = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "fixtures"
    / "torchaudio_torchvision_reference.npz"
)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE} is absent (shared data lies beside the repository)")
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files if not k.startswith(("resample", "fbank"))}


@pytest.fixture(scope="module")
def image(reference: dict[str, np.ndarray]) -> torch.Tensor:
    """``image_in`` as a [1, 3, 256, 320] uint8 tensor."""
    return torch.from_numpy(reference["image_in"]).permute(2, 0, 1)[None].contiguous()


def test_shorter_side_size_truncates_like_torchvision() -> None:
    assert shorter_side_size(256, 320, 224) == (224, 280)
    assert shorter_side_size(320, 256, 224) == (280, 224)
    assert shorter_side_size(333, 500, 224) == (224, 336)  # 336.33 truncated
    assert shorter_side_size(1080, 1920, 224) == (224, 398)  # 398.22
    assert shorter_side_size(100, 100, 224) == (224, 224)
    assert shorter_side_size(7, 1000, 224) == (224, 32000)


def test_bicubic_antialias_float_matches_torchvision(reference, image) -> None:
    # Reference: torchvision resize(float tensor, [224], BICUBIC, antialias=True). Tolerance 1e-4
    # on the 0-255 scale (measured: 0, the same F.interpolate call).
    out = resize_bicubic_antialias(image.float(), (224, 280))[0]
    expected = torch.from_numpy(reference["tv_tensor_bicubic_aa_224"])
    assert out.shape == expected.shape
    assert (out - expected).abs().max().item() <= 1e-4


def test_bicubic_antialias_uint8_matches_torchvision(reference, image) -> None:
    # Reference: torchvision resize(uint8 tensor, ...), which interpolates in float32, clamps and
    # rounds. Tolerance: exact (measured 0 of 188160 values differ).
    out = resize_bicubic_antialias(image, (224, 280))[0]
    expected = torch.from_numpy(reference["tv_tensor_bicubic_aa_224_uint8"])
    assert out.dtype == torch.uint8
    assert torch.equal(out, expected)


def test_bilinear_matches_reference(reference, image) -> None:
    # Reference: F.interpolate(bilinear, align_corners=False, no antialias) straight to 224x224,
    # run with torch 2.11. Tolerance 1e-4 on the 0-255 scale (measured: 0).
    out = resize_bilinear(image, (224, 224))[0]
    expected = torch.from_numpy(reference["tv_tensor_bilinear_224x224_noaa"])
    assert out.dtype == torch.float32
    assert (out - expected).abs().max().item() <= 1e-4


def test_bicubic_pil_matches_pillow_fixture(reference, image) -> None:
    # Reference: PIL Image.resize((280, 224), BICUBIC). Tolerance: exact.
    out = resize_shorter_side(image, 224, "bicubic_pil")[0].permute(1, 2, 0)
    assert torch.equal(out, torch.from_numpy(reference["tv_pil_bicubic_224"]))


@pytest.mark.parametrize(
    ("height", "width", "out_h", "out_w"),
    [
        (64, 80, 224, 280),  # upscale
        (100, 37, 224, 81),  # odd sizes, upscale
        (720, 1280, 224, 398),  # 720p downscale
        (225, 400, 224, 398),  # nearly one axis unchanged
        (300, 500, 7, 3),  # strong downscale
        (31, 31, 31, 31),  # no resize at all
    ],
)
def test_bicubic_pil_matches_pillow(height: int, width: int, out_h: int, out_w: int) -> None:
    # Reference: Pillow Image.resize(BICUBIC) run here. Tolerance: exact.
    image_module = pytest.importorskip("PIL.Image", reason="Pillow is the reference here")
    rng = np.random.default_rng(height * width)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    img[: height // 2, : width // 3] = 255  # hard edges: where overshoot and clipping matter
    expected = np.asarray(
        image_module.fromarray(img).resize((out_w, out_h), image_module.Resampling.BICUBIC)
    )
    out = resize_bicubic_pil(torch.from_numpy(img).permute(2, 0, 1)[None], (out_h, out_w))
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), expected)


def test_torch_bicubic_distance_from_pillow(reference, image) -> None:
    # Informational, no claim of equality: how far torchvision's tensor path is from Pillow's
    # bicubic (the path of references that decode frames into PIL images). Measured on image_in:
    # float path max 28.5 / mean 0.28 grey levels; uint8 path max 22, 16.4% of values differ,
    # mean 0.19. The gap is Pillow's rounding and clipping between its horizontal and vertical
    # passes. Bounds here only keep the numbers in this comment honest.
    pil = torch.from_numpy(reference["tv_pil_bicubic_224"]).permute(2, 0, 1).float()
    float_path = resize_bicubic_antialias(image.float(), (224, 280))[0]
    uint8_path = resize_bicubic_antialias(image, (224, 280))[0].float()
    float_gap = (float_path - pil).abs()
    uint8_gap = (uint8_path - pil).abs()
    assert 20 < float_gap.max().item() < 35 and float_gap.mean().item() < 0.5
    assert 15 < uint8_gap.max().item() < 30 and uint8_gap.mean().item() < 0.5
    assert 0.1 < (uint8_gap > 0).float().mean().item() < 0.25


def test_center_crop_offsets_round_half_to_even() -> None:
    frames = torch.arange(1 * 1 * 227 * 281).reshape(1, 1, 227, 281)
    out = center_crop(frames, 224)
    # (227 - 224) / 2 = 1.5 -> 2 and (281 - 224) / 2 = 28.5 -> 28, Python's round as torchvision.
    assert torch.equal(out, frames[..., 2:226, 28:252])
    out = center_crop(frames[..., :225, :280], (224, 224))
    assert torch.equal(out, frames[..., 0:224, 28:252])  # 0.5 -> 0


def test_center_crop_pads_small_frames_like_torchvision() -> None:
    frames = torch.ones(2, 3, 200, 223)
    out = center_crop(frames, 224)
    assert out.shape == (2, 3, 224, 224)
    # Padding left/top = (224 - size) // 2, right/bottom the rest: 12/12 rows, 0/1 columns.
    assert out[:, :, :12].abs().sum() == 0 and out[:, :, 212:].abs().sum() == 0
    assert out[:, :, 12:212, :223].eq(1).all() and out[:, :, :, 223:].abs().sum() == 0


def test_resize_shorter_side_modes(image) -> None:
    assert resize_shorter_side(image, 224, "bicubic").dtype == torch.uint8
    assert resize_shorter_side(image, 112, "bilinear").shape == (1, 3, 112, 140)
    with pytest.raises(ValueError, match="unknown resize mode"):
        resize_shorter_side(image, 224, "lanczos")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uint8"):
        resize_bicubic_pil(image.float(), (224, 280))
    with pytest.raises(ValueError, match=r"\[n, c, h, w\]"):
        resize_bilinear(image[0], (224, 224))
