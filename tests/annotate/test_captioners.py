"""Captioners on tiny random-init models saved and loaded like real checkpoints.

The tiny BLIP-2 (OPT language model) is built in memory with a word-level tokenizer made from a
dozen words, saved with ``save_pretrained`` and loaded back through
``Blip2FrameCaptioner.from_pretrained(folder)``, the path a hub id or local checkpoint takes.
The tests ask for ``min_new_tokens=3`` so that random weights still produce words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tavgbench.annotate.captioners import Blip2FrameCaptioner, CaptionerError
from tavgbench.media import decode_frames, write_audible_video

WORDS = ["<pad>", "</s>", "<unk>", "a", "dog", "cat", "on", "the", "grass", "runs", "photo", "of"]


def _tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessorPil,
    )

    tokenizer = _tokenizer()
    processor = Blip2Processor(
        BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer, num_query_tokens=4
    )
    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    config = Blip2Config(
        vision_config={**small, "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        qformer_config={
            **small, "num_attention_heads": 2, "encoder_hidden_size": 16,
            "vocab_size": len(tokenizer),
        },
        text_config={
            "model_type": "opt", "hidden_size": 16, "ffn_dim": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": len(tokenizer), "word_embed_proj_dim": 16,
            "max_position_embeddings": 64, "bos_token_id": 1, "eos_token_id": 1,
            "pad_token_id": 0,
        },
        num_query_tokens=4,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    torch.manual_seed(0)
    model = Blip2ForConditionalGeneration(config).eval()
    folder = tmp_path_factory.mktemp("tiny-blip2")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _frames(n: int) -> list[np.ndarray]:
    return [
        np.random.default_rng(i).integers(0, 256, (40, 50, 3), dtype=np.uint8) for i in range(n)
    ]


def test_blip2_loads_and_captions(tiny_blip2: Path) -> None:
    captioner = Blip2FrameCaptioner.from_pretrained(
        str(tiny_blip2), max_new_tokens=4, min_new_tokens=3
    )
    frames = _frames(5)
    captions = captioner.caption_frames(frames)
    assert len(captions) == 5
    for caption in captions:
        assert 3 <= len(caption.split()) <= 4 and set(caption.split()) <= set(WORDS[3:])
    # Batching does not change a frame's caption (greedy decoding, no padding of images).
    one_by_one = Blip2FrameCaptioner.from_pretrained(
        str(tiny_blip2), max_new_tokens=4, batch_size=1
    )
    assert one_by_one.caption_frames(frames) == captions
    assert captioner.model_id == str(tiny_blip2)


def test_blip2_prompt_is_not_echoed(tiny_blip2: Path) -> None:
    plain = Blip2FrameCaptioner.from_pretrained(str(tiny_blip2), max_new_tokens=3, min_new_tokens=3)
    prompted = Blip2FrameCaptioner.from_pretrained(
        str(tiny_blip2), max_new_tokens=3, min_new_tokens=3, prompt="a photo of"
    )
    caption = prompted.caption_frames(_frames(1))[0]
    # Only the continuation comes back: exactly 3 words (min_new_tokens = max_new_tokens = 3).
    assert len(caption.split()) == 3
    assert len(plain.caption_frames(_frames(1))[0].split()) == 3


def test_blip2_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CaptionerError, match="cannot be loaded"):
        Blip2FrameCaptioner.from_pretrained(str(tmp_path / "nothing-here"))


def test_pipeline_with_tiny_blip2(tiny_blip2: Path, tmp_path: Path, chat_server) -> None:
    from tavgbench.annotate import ChatClient, annotate_clips

    class SilentAudio:  # stand-in audio captioner; the audio side is tested elsewhere
        model_id = "test/silent"
        sample_rate = 16000

        def caption_audio(self, waveforms):
            return ["a hum"] * len(waveforms)

    clip = write_audible_video(
        tmp_path / "clips" / "x.mp4",
        np.stack(_frames(12)).astype(np.uint8)[:, :32, :48],
        12,
        np.zeros(16000, np.float32),
        16000,
    )
    blip2 = Blip2FrameCaptioner.from_pretrained(str(tiny_blip2), max_new_tokens=3, min_new_tokens=3)
    out = tmp_path / "c.jsonl"
    report = annotate_clips(
        tmp_path / "clips", out, frame_captioner=blip2, audio_captioner=SilentAudio(),
        llm=ChatClient(chat_server.url, "m", sleep=lambda _: None), num_frames=4,
    )  # fmt: skip
    assert report.written == ["x"]
    import json

    row = json.loads(out.read_text())
    assert row["frame_captions"] == blip2.caption_frames(list(decode_frames(clip, num_frames=4)))
    assert row["models"]["frames"] == str(tiny_blip2)


# The tiny Qwen2-Audio: word-level tokenizer with Qwen2-Audio's special tokens and a minimal chat
# template of ours (same roles and audio placeholders as the official template), Whisper features.
QWEN_WORDS = ["<pad>", "<|im_end|>", "<unk>", "<|im_start|>", "user", "assistant", "a", "dog",
              "barks", "Describe", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]  # fmt: skip
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio_bos|> <|AUDIO|> <|audio_eos|> {% else %}"
    "{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_qwen2_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(QWEN_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|im_start|>"],
    )  # fmt: skip
    processor = Qwen2AudioProcessor(
        WhisperFeatureExtractor(feature_size=128), tokenizer, chat_template=QWEN_TEMPLATE
    )
    config = Qwen2AudioConfig(
        audio_config={"d_model": 16, "encoder_layers": 1, "encoder_attention_heads": 2,
                      "encoder_ffn_dim": 32, "num_mel_bins": 128},
        text_config={"model_type": "qwen2", "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "vocab_size": len(tokenizer), "eos_token_id": 1, "pad_token_id": 0},
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-qwen2-audio")
    Qwen2AudioForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_qwen2_audio_loads_and_captions(tiny_qwen2_audio: Path) -> None:
    from tavgbench.annotate.captioners import Qwen2AudioCaptioner

    captioner = Qwen2AudioCaptioner.from_pretrained(
        str(tiny_qwen2_audio), max_new_tokens=3, min_new_tokens=3
    )
    assert captioner.sample_rate == 16000
    assert "<|AUDIO|>" in captioner._chat_text()
    # Clips of 1, 2 and 3 s: batched prompts are left-padded, so each caption matches its
    # one-clip run exactly (greedy decoding).
    waves = [
        0.1 * np.random.default_rng(i).standard_normal(16000 * (i + 1)).astype(np.float32)
        for i in range(3)
    ]
    captions = captioner.caption_audio(waves)
    assert len(captions) == 3
    # Special tokens are dropped when decoding, so a caption has 1 to 3 plain words.
    assert all(1 <= len(c.split()) <= 3 and set(c.split()) <= set(QWEN_WORDS) for c in captions)
    captioner.batch_size = 1
    assert captioner.caption_audio(waves) == captions
