"""WavCaps HTSAT-BART captioner on a tiny random model saved in the official checkpoint layout.

The tiny model keeps WavCaps' geometry (32 kHz, 64 mel bins, 256 x 256 HTS-AT input, 4 stages,
window 8, 1024 BART encoder steps) with narrow layers. It is written the way their ``train.py``
saves ``BartCaptionModel`` (``{"model": state_dict, "config": settings, ...}``, keys
``encoder.audio_enc.*`` with fused ``qkv``, shifted-window masks, the AudioSet head, the
torchlibrosa front-end weights, a tied ``lm_head``) by :func:`_official_layout` below, which is
written from their ``models/htsat.py`` and ``bart_captioning.py`` module names, then read back
through :func:`convert_wavcaps` and ``WavCapsCaptioner.from_checkpoint``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("tokenizers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from tavgbench.annotate.captioners import CaptionerError
from tavgbench.annotate.wavcaps import (
    SAMPLE_RATE,
    WavCapsCaptioner,
    WavCapsConfig,
    WavCapsFrontEnd,
    WavCapsModel,
    convert_wavcaps,
    log_mel,
    slaney_mel_filter_bank,
)
from tavgbench.errors import WeightsError
from tavgbench.extractors.audio import resample

# BART-base's special ids: <s> 0, <pad> 1, </s> 2, <unk> 3.
WORDS = ["<s>", "<pad>", "</s>", "<unk>", "a", "dog", "barks", "rain", "falls", "on", "the",
         "roof", "car", "engine", "runs", "loudly"]  # fmt: skip
DEPTHS = [1, 2, 1, 1]
HEADS = [1, 1, 2, 2]


def _tokenizer():
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>",
    )  # fmt: skip


def _tiny_config() -> WavCapsConfig:
    from transformers import BartConfig, ClapAudioConfig

    audio = ClapAudioConfig(
        patch_embeds_hidden_size=8, depths=DEPTHS, num_attention_heads=HEADS,
        num_hidden_layers=4, hidden_size=64, enable_fusion=False,
    )  # fmt: skip
    # Two 64-wide heads: convert_wavcaps infers BART heads as d_model // 64.
    text = BartConfig(
        vocab_size=len(WORDS), d_model=128, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=1024,
    )  # fmt: skip
    return WavCapsConfig(audio=audio, text=text)


def _official_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our WavCapsModel state dict -> BartCaptionModel's keys (the reverse of the converter)."""
    renames = [
        ("batch_norm.", "bn0."),
        ("layernorm_before.", "norm1."),
        ("layernorm_after.", "norm2."),
        ("attention.output.dense.", "attn.proj."),
        ("attention.self.relative_position_", "attn.relative_position_"),
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
    ]
    official: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("encoder.audio_encoder."):
            official[key] = value.clone()
            continue
        inner = key[len("encoder.audio_encoder.") :]
        if ".attention.self.key." in inner or ".attention.self.value." in inner:
            continue
        if ".attention.self.query." in inner:
            parts = [state[key.replace(".query.", f".{n}.")] for n in ("query", "key", "value")]
            inner = inner.replace("attention.self.query.", "attn.qkv.")
            official["encoder.audio_enc." + inner] = torch.cat(parts)
            continue
        for ours, theirs in renames:
            inner = inner.replace(ours, theirs)
        official["encoder.audio_enc." + inner] = value.clone()
    official["decoder.lm_head.weight"] = state["decoder.model.shared.weight"].clone()
    # Keys the converter drops or checks: the mask buffer of the one shifted block (stage 1,
    # block 1: 32 x 32 grid, 16 windows of 8 x 8; ClapAudioLayer recomputes it, so any value);
    # the AudioSet head; the torchlibrosa STFT kernels and mel bank.
    extra = torch.Generator().manual_seed(1)
    official["encoder.audio_enc.layers.1.blocks.1.attn_mask"] = torch.zeros(16, 64, 64)
    official["encoder.audio_enc.tscam_conv.weight"] = torch.randn(527, 64, 2, 3, generator=extra)
    official["encoder.audio_enc.tscam_conv.bias"] = torch.zeros(527)
    official["encoder.audio_enc.head.weight"] = torch.randn(527, 527, generator=extra)
    official["encoder.audio_enc.head.bias"] = torch.zeros(527)
    stft = "encoder.audio_enc.audio_feats_extractor.mel_trans.stft."
    official[stft + "conv_real.weight"] = torch.randn(513, 1, 1024, generator=extra)
    official[stft + "conv_imag.weight"] = torch.randn(513, 1, 1024, generator=extra)
    official["encoder.audio_enc.audio_feats_extractor.log_trans.melW"] = _transformers_mel_bank()
    return official


def _transformers_mel_bank() -> torch.Tensor:
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=513, num_mel_filters=64, min_frequency=50.0, max_frequency=14000.0,
        sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    return torch.from_numpy(bank).float()


SETTINGS = {
    "audio_args": {"sr": 32000, "n_fft": 1024, "hop_length": 320, "f_min": 50, "f_max": 14000,
                   "n_mels": 64, "max_length": 10, "mono": True},
    "audio_encoder_args": {"model_arch": "transformer", "model_name": "htsat",
                           "pretrained": True, "freeze": False, "spec_augment": True},
    "text_decoder_args": {"name": "facebook/bart-base", "pretrained": True},
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[WavCapsModel, Path, Path]:
    torch.manual_seed(0)
    model = WavCapsModel(_tiny_config()).eval()
    # Fresh inits leave batch-norm statistics, layer norms and relative position tables at
    # constants; perturb every float weight so that a wrong mapping changes the outputs.
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            if key.endswith("running_var"):
                value.uniform_(0.5, 1.5)
            else:
                value.add_(0.05 * torch.randn_like(value))
    folder = tmp_path_factory.mktemp("tiny-wavcaps")
    checkpoint = folder / "HTSAT-BART-tiny.pt"
    torch.save(
        {"model": _official_layout(state), "config": SETTINGS, "epoch": 1, "beam_size": 3},
        checkpoint,
    )
    tokenizer_dir = folder / "tokenizer"
    _tokenizer().save_pretrained(tokenizer_dir)
    return model, checkpoint, tokenizer_dir


def _waves() -> list[np.ndarray]:
    # 3 s (zero-padded), 12 s (cropped to the first 10 s) and 10 s clips.
    rng = np.random.default_rng(0)
    return [0.1 * rng.standard_normal(int(s * SAMPLE_RATE)).astype(np.float32) for s in (3, 12, 10)]


def test_front_end_matches_transformers_audio_utils() -> None:
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    # Reference: transformers.audio_utils (numpy, float64) with torchlibrosa's settings; the
    # filter banks agree to 1e-12 (both float64), log-mels to 1e-3 dB (ours runs in float32).
    ours = slaney_mel_filter_bank(SAMPLE_RATE, 1024, 64, 50.0, 14000.0)
    bank = mel_filter_bank(
        num_frequency_bins=513, num_mel_filters=64, min_frequency=50.0, max_frequency=14000.0,
        sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    np.testing.assert_allclose(ours, bank, rtol=0, atol=1e-12)

    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    rng = np.random.default_rng(1)
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(SAMPLE_RATE)
    reference = spectrogram(
        wave, window_function(1024, "hann"), frame_length=1024, hop_length=320, power=2.0,
        center=True, pad_mode="reflect", mel_filters=bank, log_mel="dB", reference=1.0,
        min_value=1e-10, db_range=None,
    ).T  # fmt: skip
    front = WavCapsFrontEnd()
    got = log_mel(torch.from_numpy(wave).float()[None], torch.from_numpy(ours).float(), front)
    assert got.shape == (1, 1 + SAMPLE_RATE // 320, 64) == (1, *reference.shape)
    np.testing.assert_allclose(got[0].numpy(), reference, rtol=0, atol=1e-3)


def test_convert_recovers_config_and_logits(tiny: tuple[WavCapsModel, Path, Path]) -> None:
    model, checkpoint, _ = tiny
    state, config = convert_wavcaps(checkpoint)
    assert list(config.audio.depths) == DEPTHS
    assert list(config.audio.num_attention_heads) == HEADS
    assert (config.audio.window_size, config.audio.patch_embeds_hidden_size) == (8, 8)
    assert (config.text.d_model, config.text.encoder_attention_heads) == (128, 2)
    assert config.text.max_position_embeddings == 1024
    assert config.front_end == WavCapsFrontEnd()
    loaded = WavCapsModel(config).eval()
    loaded.load_state_dict(state, strict=True)
    waves = torch.from_numpy(np.stack([w[: 10 * SAMPLE_RATE] for w in _waves()[1:]]))
    tokens = torch.tensor([[2, 0, 4, 5, 6], [2, 0, 7, 8, 9]])
    with torch.inference_mode():
        expected = model(waves, tokens)
        got = loaded(waves, tokens)
        single = loaded(waves[:1], tokens[:1])
    # Same weights through the same code: bit-identical logits.
    assert expected.shape == (2, 5, len(WORDS))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # Batch of 2 vs 1 may change CPU matmul blocking: float32 rounding only.
    torch.testing.assert_close(single, expected[:1], rtol=1e-5, atol=1e-5)


def test_captions_from_checkpoint(tiny: tuple[WavCapsModel, Path, Path]) -> None:
    model, checkpoint, tokenizer_dir = tiny
    captioner = WavCapsCaptioner.from_checkpoint(
        checkpoint, tokenizer_dir=str(tokenizer_dir), num_beams=3, max_length=8, min_length=5
    )
    assert captioner.sample_rate == SAMPLE_RATE
    assert captioner.model_id == "HTSAT-BART-tiny.pt"
    waves = _waves()
    captions = captioner.caption_audio(waves)
    assert len(captions) == 3
    # min_length 5 counts the start token and the forced <s>: at least 3 words, at most 6.
    assert all(3 <= len(c.split()) <= 6 and set(c.split()) <= set(WORDS[4:]) for c in captions)
    direct = WavCapsCaptioner(
        model, _tokenizer(), model_id="direct", num_beams=3, max_length=8, min_length=5
    )
    assert direct.caption_audio(waves) == captions
    captioner.batch_size = 1
    assert captioner.caption_audio(waves) == captions
    # Other rates go through tavgbench's resampler first.
    at_16k = [resample(torch.from_numpy(w), SAMPLE_RATE, 16000).numpy() for w in waves[:1]]
    expected = captioner.caption_audio(
        [resample(torch.from_numpy(at_16k[0]), 16000, SAMPLE_RATE).numpy()]
    )
    assert captioner.caption(at_16k, [16000]) == expected


def test_rejects_other_checkpoints(tiny: tuple[WavCapsModel, Path, Path], tmp_path: Path) -> None:
    _, checkpoint, _ = tiny
    saved = torch.load(checkpoint, weights_only=True)
    cnn = {**saved, "config": {**SETTINGS, "audio_encoder_args": {"model_arch": "cnn"}}}
    torch.save(cnn, tmp_path / "cnn.pt")
    with pytest.raises(WeightsError, match="not an HTS-AT"):
        convert_wavcaps(tmp_path / "cnn.pt")
    other_bank = {**saved, "config": {**SETTINGS, "audio_args": {**SETTINGS["audio_args"],
                                                                 "f_max": 16000}}}  # fmt: skip
    torch.save(other_bank, tmp_path / "bank.pt")
    with pytest.raises(WeightsError, match="mel filter bank"):
        convert_wavcaps(tmp_path / "bank.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot be read"):
        convert_wavcaps(tmp_path / "junk.pt")
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS[:6])}, unk_token="<unk>"))
    small = tmp_path / "small-tokenizer"
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>").save_pretrained(small)
    with pytest.raises(CaptionerError, match="tokenizer has 6 tokens"):
        WavCapsCaptioner.from_checkpoint(checkpoint, tokenizer_dir=str(small))
