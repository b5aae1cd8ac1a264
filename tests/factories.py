"""Small models of the real architectures, built in memory for tests (no hub access).

- CLIP: random-init ``CLIPModel`` in the OpenAI ViT-B/32 family saved in the hub snapshot layout,
  with a CLIP-BPE tokenizer built from a small generated vocabulary.
- ImageBind: a reduced configuration of our port, random weights.
- I3D: our state dict renamed into the piergiaj/pytorch-i3d layout (``i3d_pretrained_400.pt``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

# transformers 5 names the PIL image processor CLIPImageProcessorPil; in 4.x it is the default.
PIL_IMAGE_PROCESSOR = (
    transformers.CLIPImageProcessorPil
    if hasattr(transformers, "CLIPImageProcessorPil")
    else transformers.CLIPImageProcessor
)

WORDS = ["a", "photo", "of", "cat", "dog", "playing", "the", "guitar", "on", "beach"]
WORDS += ["red", "car", "driving", "at", "night"]


def _byte_symbols() -> list[str]:
    """The printable stand-in for each byte that byte-level BPE (GPT-2, CLIP) uses."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols = {}
    shifted = 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + shifted)
            shifted += 1
    return [symbols[byte] for byte in range(256)]


def _write_tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt in the layout of OpenAI CLIP's, with a small vocabulary.

    As in the real file, every byte symbol appears alone and with the ``</w>`` end-of-word
    suffix, merges build whole words, and the two special tokens take the last ids.
    """
    symbols = _byte_symbols()
    vocab = {symbol: i for i, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": len(symbols) + i for i, symbol in enumerate(symbols)})
    merges: list[str] = []
    for word in WORDS:
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            merge = f"{parts[0]} {parts[1]}"
            if merge not in merges:
                merges.append(merge)
            vocab.setdefault(parts[0] + parts[1], len(vocab))
            parts = [parts[0] + parts[1], *parts[2:]]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def clip_config(*, full: bool, eos_token_id: int) -> CLIPConfig:
    """OpenAI CLIP ViT-B/32's architecture (``full``) or the same family at reduced size.

    ``eos_token_id=2`` is the value of the hub config of openai/clip-vit-base-patch32 (text
    pooled at the argmax token id); the end-of-text id selects the newer first-EOS pooling.
    """
    text = {"vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}
    vision = {"image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu"}
    if full:
        text |= {"hidden_size": 512, "intermediate_size": 2048}
        text |= {"num_hidden_layers": 12, "num_attention_heads": 8}
        vision |= {"hidden_size": 768, "intermediate_size": 3072}
        vision |= {"num_hidden_layers": 12, "num_attention_heads": 12}
    else:
        text |= {"hidden_size": 64, "intermediate_size": 128}
        text |= {"num_hidden_layers": 2, "num_attention_heads": 4}
        vision |= {"hidden_size": 64, "intermediate_size": 128}
        vision |= {"num_hidden_layers": 2, "num_attention_heads": 4}
    text |= {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": eos_token_id}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)


def clip_snapshot(folder: Path, *, full: bool, legacy_eos: bool, seed: int) -> Path:
    """A random-init CLIP saved in the hub snapshot layout."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_tokenizer_files(folder)
    # Positional: the keywords are vocab_file/merges_file in transformers 4, vocab/merges in 5.
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokenizer.save_pretrained(folder)
    PIL_IMAGE_PROCESSOR().save_pretrained(folder)
    torch.manual_seed(seed)
    eos = 2 if legacy_eos else tokenizer.eos_token_id
    CLIPModel(clip_config(full=full, eos_token_id=eos)).save_pretrained(folder)
    return folder


TINY_IMAGEBIND = {
    "vision_embed_dim": 32, "vision_num_blocks": 1, "vision_num_heads": 4,
    "audio_embed_dim": 32, "audio_num_blocks": 1, "audio_num_heads": 4,
    "text_embed_dim": 16, "text_num_blocks": 1, "text_num_heads": 2, "out_embed_dim": 24,
}  # fmt: skip


def to_pytorch_i3d_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names in piergiaj/pytorch-i3d names, as in ``i3d_pretrained_400.pt``."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("logits."):
            out["logits.conv3d." + key.removeprefix("logits.")] = value.clone()
            continue
        out[key.replace(".conv.", ".conv3d.")] = value.clone()
        if key.endswith(".bn.running_var"):
            out[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    return out
