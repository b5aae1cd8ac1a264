"""CLIP image and text embeddings for CLIPSIM (OpenAI CLIP ViT-B/32 through transformers).

CLIPSIM scores a clip by ``100 * cos(image_embed(frame), text_embed(caption))`` averaged over its
frames (METRICS.md, CLIPSIM). This module gives the two embeddings and that per-clip average;
the split-level mean and its clamp at 0 belong to the metric.

Image preprocessing is that of transformers' PIL image processor (``CLIPImageProcessor`` in
transformers 4, ``CLIPImageProcessorPil`` in 5), the one torchmetrics' ``clip_score`` runs:
shorter side to 224 with PIL bicubic, centre crop 224 (offset floored), ``/255`` in float64 then
float32, CLIP mean/std in float32. It is written out here rather than called so that the protocol
is fixed by our code, not by whichever image-processor backend a transformers version picks; the
tests check it against transformers bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import safetensors.torch
import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PreTrainedTokenizerBase

from tavgbench.errors import WeightsError
from tavgbench.extractors.base import Extractor
from tavgbench.metrics.stats import cosine_similarity_rows

IMAGE_SIZE = 224
TEXT_MAX_LENGTH = 77
DEFAULT_MODEL_ID = "openai/clip-vit-base-patch32"

# OpenAI CLIP's normalisation constants (clip/clip.py `_transform`, transformers OPENAI_CLIP_*).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_MEAN32 = np.asarray(CLIP_MEAN, dtype=np.float32)
_STD32 = np.asarray(CLIP_STD, dtype=np.float32)
_RESCALE = 1 / 255

# Older transformers versions saved these index buffers; current ones rebuild them and refuse
# them as unexpected keys under strict loading.
_DERIVED_BUFFERS = (
    "text_model.embeddings.position_ids",
    "vision_model.embeddings.position_ids",
)

# Checkpoint files of a hub snapshot, in the order they are preferred.
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def convert_clip(path: Path) -> dict[str, torch.Tensor]:
    """Reads a transformers ``CLIPModel`` checkpoint into a state dict for strict loading.

    Args:
        path: ``model.safetensors`` or ``pytorch_model.bin`` of a hub snapshot such as
            ``openai/clip-vit-base-patch32``. ``.bin`` files load with ``weights_only=True``,
            which admits tensors and plain containers only.

    Returns:
        The state dict, floating tensors in float32, without the derived ``position_ids`` buffers.

    Raises:
        WeightsError: the file is missing, unreadable, or not a flat dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"CLIP checkpoint {path} does not exist; fetch it with `tavgbench weights`."
        )
    try:
        if path.suffix == ".safetensors":
            loaded: Any = safetensors.torch.load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"cannot read CLIP checkpoint {path} ({error}); delete it and fetch it again with "
            "`tavgbench weights`."
        ) from error
    if not isinstance(loaded, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()
    ):
        raise WeightsError(
            f"CLIP checkpoint {path} is not a state dict of tensors; expected the "
            "model.safetensors or pytorch_model.bin of a transformers CLIPModel snapshot."
        )
    return {
        key: value.float() if value.is_floating_point() else value
        for key, value in loaded.items()
        if key not in _DERIVED_BUFFERS
    }


def clipsim_per_clip(
    frame_embeddings: Sequence[np.ndarray], text_embeddings: np.ndarray
) -> np.ndarray:
    """Per-clip CLIPSIM: ``100 * cos(frame, caption)`` averaged over each clip's frames.

    A cosine, never a dot product, so the embeddings need not be normalised. No clamp here:
    the split score is the mean over clips clamped at 0 (torchmetrics ``clip_score``).

    Args:
        frame_embeddings: one ``[t_i, d]`` array per clip (``CLIPExtractor.embed_frames``).
        text_embeddings: ``[n, d]``, row ``i`` the caption of clip ``i``
            (``CLIPExtractor.embed_text``).

    Returns:
        ``[n]`` float64 scores in [-100, 100].

    Raises:
        ValueError: the number of clips and captions differ.
        tavgbench.metrics.stats.StatisticsError: empty clip, shape mismatch, non-finite or
            all-zero embeddings.
    """
    text = np.asarray(text_embeddings)
    if text.ndim != 2 or text.shape[0] != len(frame_embeddings):
        raise ValueError(
            f"got {len(frame_embeddings)} clips but caption embeddings of shape {text.shape}; "
            "pass one caption embedding row per clip."
        )
    scores = np.empty(len(frame_embeddings), dtype=np.float64)
    for i, frames in enumerate(frame_embeddings):
        frames = np.asarray(frames)
        caption = np.repeat(text[i : i + 1], len(frames), axis=0)
        scores[i] = 100.0 * cosine_similarity_rows(frames, caption).mean()
    return scores


def _resize_shorter_side(size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) with the shorter side at IMAGE_SIZE, as transformers computes it.

    The longer side is truncated, not rounded (``get_resize_output_image_size``).
    """
    height, width = size
    if width <= height:
        return int(IMAGE_SIZE * height / width), IMAGE_SIZE
    return IMAGE_SIZE, int(IMAGE_SIZE * width / height)


def _resize_and_crop(frame: np.ndarray) -> np.ndarray:
    """One uint8 ``[h, w, 3]`` frame to a uint8 ``[224, 224, 3]`` centre crop."""
    new_height, new_width = _resize_shorter_side(frame.shape[:2])
    image = Image.fromarray(np.ascontiguousarray(frame))
    # PIL returns an unchanged copy when the size already matches, as the reference does.
    resized = np.asarray(image.resize((new_width, new_height), resample=Image.Resampling.BICUBIC))
    top = (new_height - IMAGE_SIZE) // 2
    left = (new_width - IMAGE_SIZE) // 2
    return resized[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE]


def _normalize(frames: np.ndarray) -> np.ndarray:
    """float32 ``[t, 224, 224, 3]`` in [0, 1] to the model's float32 ``[t, 3, 224, 224]``."""
    return np.ascontiguousarray(((frames - _MEAN32) / _STD32).transpose(0, 3, 1, 2))


def preprocess_frames(frames: np.ndarray) -> np.ndarray:
    """CLIP's image preprocessing of one clip's uint8 frames.

    Args:
        frames: uint8 ``[t, h, w, 3]`` RGB.

    Returns:
        float32 ``[t, 3, 224, 224]``, equal to ``CLIPImageProcessor`` (PIL backend) pixel values.
    """
    crops = np.stack([_resize_and_crop(frame) for frame in frames])
    # float64 multiply then float32, as transformers' rescale does, so results match bit for bit.
    return _normalize((crops.astype(np.float64) * _RESCALE).astype(np.float32))


def _clip_list(frames: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """``[n, t, h, w, 3]`` or a list of ``[t, h, w, 3]`` arrays to a list of per-clip arrays."""
    clips = list(frames)
    for i, clip in enumerate(clips):
        if not isinstance(clip, np.ndarray) or clip.ndim != 4 or clip.shape[-1] != 3:
            shape = getattr(clip, "shape", type(clip).__name__)
            raise ValueError(
                f"clip {i} must be a numpy array [frames, height, width, 3], got {shape}."
            )
        if clip.shape[0] == 0:
            raise ValueError(f"clip {i} has no frames; CLIPSIM needs at least one frame per clip.")
    return clips


class CLIPExtractor(Extractor):
    """OpenAI CLIP per-frame image embeddings and caption embeddings (projected, 512-d).

    Args:
        model: a transformers ``CLIPModel`` holding the weights (moved to ``device``, eval mode).
        tokenizer: the CLIP BPE tokenizer of the same snapshot.
        device: where the network runs.
        weights_sha256: sha256 of the checkpoint file loaded ("" when built in memory).
        batch_size: frames or captions per forward pass.
        model_id: hub id of the weights, recorded in the protocol.
        frames_per_clip: frames sampled evenly over each clip by the caller, recorded in the
            protocol.
    """

    name: ClassVar[str] = "clip"
    version: ClassVar[str] = "1"
    weights: ClassVar[str] = "clip-vit-base-patch32"

    def __init__(
        self,
        model: CLIPModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        batch_size: int = 64,
        model_id: str = DEFAULT_MODEL_ID,
        frames_per_clip: int = 16,
    ) -> None:
        super().__init__(device=device, weights_sha256=weights_sha256)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.model_id = model_id
        self.frames_per_clip = frames_per_clip

    @classmethod
    def from_state_dict(
        cls,
        state_dict: dict[str, torch.Tensor],
        *,
        config: CLIPConfig,
        tokenizer: PreTrainedTokenizerBase,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        batch_size: int = 64,
        **protocol_options: Any,
    ) -> CLIPExtractor:
        """Builds the extractor from a state dict (``convert_clip`` output) loaded strictly.

        Raises:
            WeightsError: the state dict does not fit ``config`` (missing, unexpected or
                misshapen keys).
        """
        if config.vision_config.image_size != IMAGE_SIZE:
            raise WeightsError(
                f"CLIP config has vision image_size {config.vision_config.image_size}, but the "
                f"CLIPSIM protocol feeds {IMAGE_SIZE}x{IMAGE_SIZE} crops; use a 224-pixel CLIP."
            )
        model = CLIPModel(config)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as error:
            raise WeightsError(
                f"CLIP weights do not match the CLIP config: {error}. Re-fetch the checkpoint "
                "with `tavgbench weights`."
            ) from error
        return cls(
            model,
            tokenizer,
            device=device,
            weights_sha256=weights_sha256,
            batch_size=batch_size,
            **protocol_options,
        )

    @classmethod
    def from_pretrained_dir(
        cls,
        path: Path,
        *,
        device: str | torch.device = "cpu",
        weights_sha256: str = "",
        batch_size: int = 64,
        **protocol_options: Any,
    ) -> CLIPExtractor:
        """Loads a local hub snapshot (config.json, weights, tokenizer files), never the network.

        Args:
            path: folder laid out as the ``openai/clip-vit-base-patch32`` hub snapshot.
            device: where the network runs.
            weights_sha256: sha256 of the weights file, recorded in the cache key.
            batch_size: frames or captions per forward pass.
            **protocol_options: ``model_id`` and ``frames_per_clip`` (see the class).

        Raises:
            WeightsError: a file is missing, or the snapshot's preprocessor_config.json asks for
                preprocessing other than the fixed CLIPSIM protocol.
        """
        path = Path(path)
        if not (path / "config.json").is_file():
            raise WeightsError(
                f"{path} is not a CLIP snapshot (no config.json); fetch clip-vit-base-patch32 with "
                "`tavgbench weights`."
            )
        weight_file = next((path / n for n in _WEIGHT_FILES if (path / n).is_file()), None)
        if weight_file is None:
            raise WeightsError(
                f"{path} has neither {' nor '.join(_WEIGHT_FILES)}; fetch clip-vit-base-patch32 "
                "again with `tavgbench weights`."
            )
        _check_preprocessor_config(path / "preprocessor_config.json")
        try:
            config = CLIPConfig.from_pretrained(path, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise WeightsError(
                f"cannot load the CLIP config or tokenizer from {path} ({error}); the snapshot "
                "needs config.json, vocab.json, merges.txt and tokenizer_config.json."
            ) from error
        return cls.from_state_dict(
            convert_clip(weight_file),
            config=config,
            tokenizer=tokenizer,
            device=device,
            weights_sha256=weights_sha256,
            batch_size=batch_size,
            **protocol_options,
        )

    @property
    def protocol(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "image_size": IMAGE_SIZE,
            "resize": "bicubic-pil-shorter-side",
            "crop": "center",
            "mean": list(CLIP_MEAN),
            "std": list(CLIP_STD),
            "text_max_length": TEXT_MAX_LENGTH,
            "text_truncation": "keep-eot",
            "frames_per_clip": self.frames_per_clip,
            "frame_sampling": "uniform",
        }

    def embed_frames(
        self, frames: np.ndarray | Sequence[np.ndarray], preprocess: bool = True
    ) -> list[np.ndarray]:
        """Per-frame CLIP image embeddings (after the visual projection, not normalised).

        Frames of all clips are batched together, ``batch_size`` at a time.

        Args:
            frames: uint8 RGB ``[n, t, h, w, 3]`` or a list of per-clip ``[t_i, h, w, 3]`` arrays.
            preprocess: when False, frames are float in [0, 1] and already 224x224; only the
                CLIP mean/std normalisation is applied.

        Returns:
            One float32 ``[t_i, 512]`` array per clip.
        """
        clips = _clip_list(frames)
        pending: list[np.ndarray] = []
        embedded: list[np.ndarray] = []
        n_pending = 0
        for i, clip in enumerate(clips):
            pixels = (
                preprocess_frames(_uint8_frames(clip, i)) if preprocess else _unit_frames(clip, i)
            )
            # Batches span clip boundaries so short clips still fill the batch.
            while pixels.shape[0]:
                pending.append(pixels[: self.batch_size - n_pending])
                n_pending += pending[-1].shape[0]
                pixels = pixels[pending[-1].shape[0] :]
                if n_pending == self.batch_size:
                    embedded.append(self._image_features(np.concatenate(pending)))
                    pending, n_pending = [], 0
        if pending:
            embedded.append(self._image_features(np.concatenate(pending)))
        features = np.concatenate(embedded)
        bounds = np.cumsum([clip.shape[0] for clip in clips])[:-1]
        return np.split(features, bounds)

    def embed_text(self, captions: Sequence[str]) -> np.ndarray:
        """CLIP caption embeddings (after the text projection, not normalised).

        Captions are tokenised with the snapshot's CLIP BPE tokenizer, padded to and truncated
        at 77 tokens; truncation keeps the end-of-text token last, as OpenAI's
        ``clip.tokenize(truncate=True)`` does, because the text embedding is read at that token.

        Args:
            captions: the captions, one per clip.

        Returns:
            float32 ``[n, 512]``.
        """
        if isinstance(captions, str):
            raise ValueError("captions must be a list of strings, not a single string.")
        captions = list(captions)
        if not captions:
            return np.zeros((0, self.model.config.projection_dim), dtype=np.float32)
        embedded = []
        for start in range(0, len(captions), self.batch_size):
            # Fixed-length padding keeps each caption's tensor shape, and so its embedding,
            # independent of the other captions in its batch; the causal mask makes the
            # end-of-text position blind to the padding after it.
            tokens = self.tokenizer(
                captions[start : start + self.batch_size],
                padding="max_length",
                truncation=True,
                max_length=TEXT_MAX_LENGTH,
                return_tensors="pt",
            )
            with torch.inference_mode():
                output = self.model.text_model(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                )
                projected = self.model.text_projection(output.pooler_output)
            embedded.append(projected.float().cpu().numpy())
        return np.concatenate(embedded)

    def _image_features(self, pixels: np.ndarray) -> np.ndarray:
        """float32 ``[b, 3, 224, 224]`` pixel values to ``[b, 512]`` projected embeddings."""
        with torch.inference_mode():
            pixel_values = torch.from_numpy(pixels).to(self.device)
            output = self.model.vision_model(pixel_values=pixel_values)
            projected = self.model.visual_projection(output.pooler_output)
        return projected.float().cpu().numpy()


def _uint8_frames(clip: np.ndarray, index: int) -> np.ndarray:
    if clip.dtype != np.uint8:
        raise ValueError(
            f"clip {index} has dtype {clip.dtype}; preprocess=True takes uint8 RGB frames "
            "(pass preprocess=False for float frames already at 224x224 in [0, 1])."
        )
    return clip


def _unit_frames(clip: np.ndarray, index: int) -> np.ndarray:
    if clip.shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE) or not np.issubdtype(clip.dtype, np.floating):
        raise ValueError(
            f"clip {index} is {clip.dtype} {clip.shape}; preprocess=False takes float frames "
            f"[t, {IMAGE_SIZE}, {IMAGE_SIZE}, 3] in [0, 1]."
        )
    if clip.min() < 0 or clip.max() > 1:
        raise ValueError(
            f"clip {index} has values in [{clip.min()}, {clip.max()}]; preprocess=False takes "
            "frames scaled to [0, 1]."
        )
    return _normalize(clip.astype(np.float32, copy=False))


def _check_preprocessor_config(path: Path) -> None:
    """Refuses a snapshot whose own image preprocessing differs from the CLIPSIM protocol."""
    if not path.is_file():
        return
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise WeightsError(
            f"cannot read {path} ({error}); fetch the CLIP snapshot again."
        ) from error

    def side(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, dict) else value

    expected = {
        "size": (side(settings.get("size", IMAGE_SIZE), "shortest_edge"), IMAGE_SIZE),
        "crop_size": (side(settings.get("crop_size", IMAGE_SIZE), "height"), IMAGE_SIZE),
        "resample": (settings.get("resample", 3), 3),
        "do_center_crop": (settings.get("do_center_crop", True), True),
        "do_normalize": (settings.get("do_normalize", True), True),
    }
    differing = [key for key, (found, wanted) in expected.items() if found != wanted]
    for key, wanted in (("image_mean", CLIP_MEAN), ("image_std", CLIP_STD)):
        if not np.allclose(settings.get(key, wanted), wanted, rtol=0, atol=1e-7):
            differing.append(key)
    if differing:
        raise WeightsError(
            f"{path} sets {', '.join(differing)} differently from the CLIPSIM protocol "
            "(bicubic shorter side 224, centre crop 224, OpenAI CLIP mean/std); this is not an "
            "OpenAI CLIP ViT-B snapshot."
        )
