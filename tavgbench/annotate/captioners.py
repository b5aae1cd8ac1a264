"""Captioners for the annotation pipeline, on transformers.

* :class:`Blip2FrameCaptioner`: BLIP-2 (``Blip2ForConditionalGeneration``) captions each frame;
  any BLIP-2 checkpoint by hub id or local folder (OPT or Flan-T5 language model).
* :class:`Qwen2AudioCaptioner`: Qwen2-Audio (``Qwen2AudioForConditionalGeneration``) captions
  the soundtrack from a chat prompt; any Qwen2-Audio checkpoint by hub id or local folder.

Both decode greedily by default (``num_beams=1``) so that a rerun gives the same captions, and
run batched under ``torch.inference_mode()`` on the given device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tavgbench.errors import TavgbenchError

DEFAULT_BLIP2 = "Salesforce/blip2-opt-2.7b"
DEFAULT_QWEN2_AUDIO = "Qwen/Qwen2-Audio-7B-Instruct"
AUDIO_PROMPT = "Describe the sounds in this audio clip in one sentence."


class CaptionerError(TavgbenchError):
    """A captioning model cannot be loaded."""


def _load(loader: Any, name_or_path: str, what: str, **options: Any) -> Any:
    try:
        return loader.from_pretrained(name_or_path, **options)
    except (OSError, ValueError) as exc:
        raise CaptionerError(
            f"{what} {name_or_path!r} cannot be loaded ({str(exc).splitlines()[0]}); give a "
            "hub id reachable from here or a local folder saved with save_pretrained"
        ) from exc


def _dtype(name: str | None) -> Any:
    import torch

    if name in (None, "", "auto"):
        return None
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise CaptionerError(f"dtype {name!r} is not one of {sorted(dtypes)}")
    return dtypes[name]


class Blip2FrameCaptioner:
    """Caption frames with BLIP-2.

    Args:
        model: a ``Blip2ForConditionalGeneration``.
        processor: its ``Blip2Processor``.
        model_id: recorded in the output (hub id or folder).
        device: torch device for the model and inputs.
        batch_size: frames per forward pass.
        max_new_tokens: caption length limit.
        min_new_tokens: shortest caption in tokens (LAVIS's BLIP-2 uses ``min_length=1``, which
            keeps an immediate end-of-text from giving an empty caption).
        num_beams: beam width (1 is greedy).
        prompt: optional text prefix (e.g. ``"a photo of"``); None captions unconditionally.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        device: str = "cpu",
        batch_size: int = 16,
        max_new_tokens: int = 30,
        min_new_tokens: int = 1,
        num_beams: int = 1,
        prompt: str | None = None,
    ) -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.model_id = model_id
        self.device = device
        self.batch_size = batch_size
        self.generate_options = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min_new_tokens,
            "num_beams": num_beams,
            "do_sample": False,
        }
        self.prompt = prompt

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_BLIP2, *, device: str = "cpu", dtype: str | None = None,
        **options: Any,
    ) -> Blip2FrameCaptioner:  # fmt: skip
        """Load a BLIP-2 checkpoint (hub id or local folder) with its processor."""
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        processor = _load(Blip2Processor, name_or_path, "BLIP-2 processor")
        model = _load(
            Blip2ForConditionalGeneration, name_or_path, "BLIP-2 model", dtype=_dtype(dtype)
        )
        return cls(model, processor, model_id=name_or_path, device=device, **options)

    def caption_frames(self, frames: Sequence[np.ndarray]) -> list[str]:
        """One caption per ``[h, w, 3]`` uint8 RGB frame."""
        import torch

        captions: list[str] = []
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                batch = [np.asarray(f) for f in frames[start : start + self.batch_size]]
                text = [self.prompt] * len(batch) if self.prompt else None
                inputs = self.processor(images=batch, text=text, return_tensors="pt")
                inputs = {
                    k: v.to(self.device, dtype) if k == "pixel_values" else v.to(self.device)
                    for k, v in inputs.items()
                }
                output = self.model.generate(**inputs, **self.generate_options)
                if not self.model.config.text_config.is_encoder_decoder and "input_ids" in inputs:
                    # Decoder-only language models echo the prompt (image tokens included).
                    output = output[:, inputs["input_ids"].shape[1] :]
                decoded = self.processor.batch_decode(output, skip_special_tokens=True)
                captions.extend(text.strip() for text in decoded)
        return captions


class Qwen2AudioCaptioner:
    """Caption soundtracks with Qwen2-Audio (instruct checkpoints, chat template).

    Args:
        model: a ``Qwen2AudioForConditionalGeneration``.
        processor: its ``Qwen2AudioProcessor`` (Whisper features at 16 kHz).
        model_id: recorded in the output.
        device: torch device.
        batch_size: clips per forward pass.
        max_new_tokens: caption length limit.
        min_new_tokens: shortest caption in tokens (1 keeps captions from being empty).
        prompt: the instruction given with each clip.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        device: str = "cpu",
        batch_size: int = 4,
        max_new_tokens: int = 60,
        min_new_tokens: int = 1,
        prompt: str = AUDIO_PROMPT,
    ) -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        # A decoder-only model continues the last position: batched prompts must pad on the left.
        self.processor.tokenizer.padding_side = "left"
        self.model_id = model_id
        self.device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        self.prompt = prompt
        self.sample_rate = int(processor.feature_extractor.sampling_rate)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str = DEFAULT_QWEN2_AUDIO, *, device: str = "cpu",
        dtype: str | None = None, **options: Any,
    ) -> Qwen2AudioCaptioner:  # fmt: skip
        """Load a Qwen2-Audio checkpoint (hub id or local folder) with its processor."""
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        processor = _load(AutoProcessor, name_or_path, "Qwen2-Audio processor")
        model = _load(
            Qwen2AudioForConditionalGeneration, name_or_path, "Qwen2-Audio model",
            dtype=_dtype(dtype),
        )  # fmt: skip
        return cls(model, processor, model_id=name_or_path, device=device, **options)

    def _chat_text(self) -> str:
        conversation = [
            {
                "role": "user",
                "content": [
                    {"type": "audio", "audio_url": "clip"},
                    {"type": "text", "text": self.prompt},
                ],
            }
        ]
        return self.processor.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )

    def caption_audio(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        """One caption per mono float32 waveform at :attr:`sample_rate`."""
        import torch

        text = self._chat_text()
        captions: list[str] = []
        dtype = next(self.model.parameters()).dtype
        with torch.inference_mode():
            for start in range(0, len(waveforms), self.batch_size):
                batch = [
                    np.asarray(w, np.float32) for w in waveforms[start : start + self.batch_size]
                ]
                inputs = self.processor(
                    text=[text] * len(batch),
                    audio=batch,
                    sampling_rate=self.sample_rate,
                    return_tensors="pt",
                    padding=True,
                )
                inputs = {
                    k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)
                    for k, v in inputs.items()
                }
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=self.max_new_tokens,
                    min_new_tokens=self.min_new_tokens,
                    do_sample=False,
                )
                output = output[:, inputs["input_ids"].shape[1] :]
                decoded = self.processor.batch_decode(output, skip_special_tokens=True)
                captions.extend(text.strip() for text in decoded)
        return captions
