"""VGGish (AudioSet) embeddings for FAD: our port, loading torchvggish's checkpoint.

The network is TF's ``research/audioset/vggish/vggish_slim.py``: four VGG blocks (conv 3x3 +
ReLU, max-pool 2x2) on a ``[96 frames, 64 mel]`` log-mel example, then fully connected layers
12288 -> 4096 -> 4096 -> 128. The FAD embedding is the last layer **before** its ReLU (TF's
``vggish/embedding`` tensor is the pre-activation of fc2; torchvggish appends a ReLU that FAD users
drop, harritaylor/torchvggish#24), with no PCA/quantisation postprocessing.

Parameter names follow torchvggish (``features.{0,3,6,8,11,13}`` convolutions,
``embeddings.{0,2,4}`` linear layers), so its ``vggish-10086976.pth`` loads as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from tavgbench.errors import WeightsError
from tavgbench.extractors.audio import (
    VGGISH_EXAMPLE_FRAMES,
    VGGISH_SAMPLE_RATE,
    AudioTooShortError,
    VGGishProtocol,
    vggish_examples,
)
from tavgbench.extractors.base import Extractor

__all__ = ["VGGish", "VGGishExtractor", "convert_vggish"]

EMBEDDING_DIM = 128
_CONV_CHANNELS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


class VGGish(nn.Module):
    """VGGish with torchvggish's parameter layout; returns the 128-d fc2 pre-activation.

    Input ``[n, 1, 96, 64]`` log-mel examples (time x mel); output ``[n, 128]``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 1
        for spec in _CONV_CHANNELS:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels = int(spec)
                layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        # 512 channels x 6 (time) x 4 (mel) after four 2x2 pools of 96 x 64.
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, EMBEDDING_DIM),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples)
        # TF flattens NHWC (time, mel, channel); the fc1 weights expect that order.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(x)


def convert_vggish(path: Path) -> dict[str, torch.Tensor]:
    """Read torchvggish's ``vggish-10086976.pth`` and return :class:`VGGish`'s state dict.

    The file is a plain ``state_dict`` of tensors; it is read with ``weights_only=True`` (no
    arbitrary unpickling). The PCA parameters (``vggish_pca_params-970ea276.pth``) are not used.

    Raises:
        WeightsError: the file cannot be read or does not hold VGGish's parameters.
    """
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"cannot read the VGGish checkpoint {path}: {error}. Delete it and fetch it again "
            "(tavgbench weights)."
        ) from error
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path} is not a VGGish state dict (found {type(loaded).__name__})")
    expected = VGGish().state_dict()
    missing = sorted(set(expected) - set(loaded))
    unexpected = sorted(set(loaded) - set(expected))
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not hold torchvggish's VGGish parameters: missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}. Use vggish-10086976.pth from harritaylor/torchvggish."
        )
    state: dict[str, torch.Tensor] = {}
    for key, reference in expected.items():
        tensor = loaded[key]
        if not isinstance(tensor, torch.Tensor) or tensor.shape != reference.shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor)
            raise WeightsError(
                f"{path}: parameter {key} has shape {shape}, expected {tuple(reference.shape)}"
            )
        state[key] = tensor.to(torch.float32).contiguous()
    return state


class VGGishExtractor(Extractor):
    """FAD embeddings: VGGish fc2 pre-activation of every 0.96 s example of a clip.

    FAD pools all examples of a set into one Gaussian (:meth:`embed_audio_examples`);
    :meth:`embed_audio` gives one mean vector per clip for per-clip uses.

    Protocols (see :func:`tavgbench.extractors.audio.vggish_examples`): ``"audioldm"``
    (default; non-overlapping examples, no loudness normalisation) and ``"google"``
    (google-research frechet_audio_distance: 1 s windows every 0.5 s, divided by
    ``max(0.1, max(x))``). Input at any rate is resampled to 16 kHz with torchaudio's algorithm.
    """

    name: ClassVar[str] = "vggish"
    version: ClassVar[str] = "1"
    weights: ClassVar[str] = "vggish"

    def __init__(
        self,
        model: VGGish,
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        protocol: VGGishProtocol = "audioldm",
        batch_size: int = 64,
    ) -> None:
        super().__init__(device=device, weights_sha256=weights_sha256)
        if protocol not in ("audioldm", "google"):
            raise ValueError(f"VGGish protocol must be 'audioldm' or 'google', got {protocol!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model.to(self.device).eval()
        self.fad_protocol: VGGishProtocol = protocol
        self.batch_size = batch_size

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict[str, torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        protocol: VGGishProtocol = "audioldm",
        batch_size: int = 64,
    ) -> VGGishExtractor:
        """Build the extractor from :func:`convert_vggish`'s state dict (strict loading)."""
        model = VGGish()
        model.load_state_dict(state_dict, strict=True)
        return cls(
            model,
            device=device,
            weights_sha256=weights_sha256,
            protocol=protocol,
            batch_size=batch_size,
        )

    @property
    def protocol(self) -> dict[str, Any]:
        google = self.fad_protocol == "google"
        return {
            "protocol": self.fad_protocol,
            "sample_rate": VGGISH_SAMPLE_RATE,
            "resampler": "torchaudio sinc_interp_hann, width 6, rolloff 0.99",
            "log_mel": "vggish_params: 25 ms periodic hann, 10 ms hop, fft 512, 64 htk mel "
            "125-7500 Hz, log(x + 0.01)",
            "example_frames": VGGISH_EXAMPLE_FRAMES,
            "example_hop_seconds": 0.5 if google else 0.96,
            "loudness_normalisation": "x / max(0.1, max(x))" if google else "none",
            "embedding": "fc2 pre-activation, 128-d, no PCA",
        }

    def embed_audio_examples(
        self, waveforms: Sequence[np.ndarray | torch.Tensor] | np.ndarray, sample_rate: int
    ) -> list[np.ndarray]:
        """Embeddings of every example of every clip.

        Args:
            waveforms: mono clips, a sequence of 1-D arrays or one ``[n, samples]`` array.
            sample_rate: their sample rate in Hz.

        Returns:
            One float32 array ``[examples_i, 128]`` per clip, in input order.

        Raises:
            AudioTooShortError: a clip yields no example (too short for the protocol); the
                message names the clip's index.
        """
        per_clip: list[torch.Tensor] = []
        for index, waveform in enumerate(waveforms):
            if isinstance(waveform, torch.Tensor):
                audio = waveform.detach().cpu()
            else:
                audio = torch.from_numpy(np.asarray(waveform))
            if audio.dim() != 1 or not audio.is_floating_point():
                raise ValueError(
                    f"clip {index}: expected a 1-D float mono waveform, got "
                    f"{tuple(audio.shape)} {audio.dtype}"
                )
            try:
                per_clip.append(vggish_examples(audio, sample_rate, self.fad_protocol))
            except AudioTooShortError as error:
                raise AudioTooShortError(f"clip {index}: {error}") from error
        if not per_clip:
            return []
        counts = [len(examples) for examples in per_clip]
        examples = torch.cat(per_clip)
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(examples), self.batch_size):
                batch = examples[start : start + self.batch_size].to(self.device)
                outputs.append(self.model(batch).float().cpu())
        embeddings = torch.cat(outputs).numpy()
        split_at = np.cumsum(counts)[:-1]
        return [chunk.astype(np.float32) for chunk in np.split(embeddings, split_at)]

    def embed_audio(
        self, waveforms: Sequence[np.ndarray | torch.Tensor] | np.ndarray, sample_rate: int
    ) -> np.ndarray:
        """Per-clip mean of the example embeddings, float32 ``[n_clips, 128]``.

        FAD itself uses :meth:`embed_audio_examples` (every example is a sample of the Gaussian);
        this mean is for per-clip tables and similarities.
        """
        per_clip = self.embed_audio_examples(waveforms, sample_rate)
        if not per_clip:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([e.mean(axis=0, dtype=np.float64) for e in per_clip]).astype(np.float32)
