"""The WavCaps audio captioner (HTS-AT encoder + BART decoder) as an :class:`AudioCaptioner`.

A port of ``BartCaptionModel`` from XinhaoMei/WavCaps (``captioning/models/bart_captioning.py``,
the ``HTSAT-BART-FT-AudioCaps.pt`` / ``HTSAT-BART-FT-Clotho.pt`` checkpoints) onto transformers:

* Front end (their ``models/feature_extractor.py``, torchlibrosa): power spectrogram of a
  1024-point periodic-Hann STFT, hop 320, centred with reflect padding, at 32 kHz; a Slaney mel
  filter bank (64 bands, 50 Hz to 14 kHz, librosa's ``filters.mel`` with Slaney norm);
  ``10 log10(max(mel, 1e-10))`` (ref 1, no top-dB clip). Their inference script takes the first
  10 s of a clip and zero-pads shorter clips to 10 s (1001 frames).
* Audio encoder (their ``models/htsat.py``): HTS-AT, which is transformers' ``ClapAudioModel``
  without fusion (batch norm over mel bins, bicubic stretch to 1024 frames, 4 x 256 folding,
  Swin stages, token-semantic regrouping). The captioner takes the regrouped map averaged over
  frequency (their ``fine_grained_embedding``: 32 time steps of 768) and repeats each step so
  that the sequence has one step per stretched frame (32 x 32 = 1024).
* ``enc_to_dec_proj`` (linear 768 -> 768) feeds the BART *encoder* as ``inputs_embeds`` (its
  positions and layers run on top); the BART decoder generates from that encoder output.
* Decoding as their ``generate``: beam search (3 beams), ``max_length`` 30, ``min_length`` 2,
  starting from ``decoder_start_token_id``, plus the generation defaults that facebook/bart-base
  brings along (``no_repeat_ngram_size=3``, ``early_stopping=True``, ``forced_bos_token_id=0``,
  ``forced_eos_token_id=2``).

Waveforms at other rates are resampled to 32 kHz with :func:`tavgbench.extractors.audio.resample`
(torchaudio's sinc resampler; their scripts load with librosa, whose resampler differs slightly).
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tavgbench.annotate.captioners import CaptionerError, _load
from tavgbench.errors import WeightsError

__all__ = [
    "SAMPLE_RATE",
    "WavCapsCaptioner",
    "WavCapsConfig",
    "WavCapsFrontEnd",
    "WavCapsModel",
    "convert_wavcaps",
    "log_mel",
    "slaney_mel_filter_bank",
]

#: The rate every WavCaps HTS-AT model runs at (``audio_args.sr``).
SAMPLE_RATE = 32000
DEFAULT_TOKENIZER = "facebook/bart-base"

# HTS-AT geometry fixed in their AudioEncoderModel (not stored in the checkpoint): a 256 x 256
# "image" made of 4 time chunks of 64 mel bins by 256 frames.
_SPEC_SIZE = 256
_HTSAT_MEL_BINS = 64
# BART-base heads are 64 wide (768 / 12); head counts are not visible in weight shapes.
_BART_HEAD_DIM = 64
_AUDIO = "encoder.audio_enc."
# Official keys with no counterpart here: the torchlibrosa STFT kernels (recomputed by
# :func:`log_mel`), the AudioSet tagging head (unused for captioning) and the shifted-window masks
# (buffers that ClapAudioLayer recomputes).
_DROPPED = re.compile(
    r"audio_feats_extractor\.mel_trans\.|tscam_conv\.|head\.|layers\.\d+\.blocks\.\d+\.attn_mask$"
)
_MEL_FILTERS_KEY = "audio_feats_extractor.log_trans.melW"


@dataclass(frozen=True)
class WavCapsFrontEnd:
    """The log-mel front end (``audio_args`` of their settings) and the clip length."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop_length: int = 320
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float = 14000.0
    max_seconds: float = 10.0

    @property
    def num_samples(self) -> int:
        """Samples per clip after cropping or zero-padding."""
        return round(self.max_seconds * self.sample_rate)


@dataclass(frozen=True)
class WavCapsConfig:
    """Everything needed to build a :class:`WavCapsModel`.

    Attributes:
        audio: the HTS-AT ``ClapAudioConfig``.
        text: the ``BartConfig``.
        front_end: log-mel parameters and clip length.
    """

    audio: Any
    text: Any
    front_end: WavCapsFrontEnd = WavCapsFrontEnd()


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney's Auditory Toolbox scale: linear below 1 kHz, logarithmic above.
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    linear = mel * (200.0 / 3.0)
    log_step = math.log(6.4) / 27.0
    log = 1000.0 * np.exp(log_step * (mel - 15.0))
    return np.where(mel >= 15.0, log, linear)


def slaney_mel_filter_bank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
) -> np.ndarray:
    """Triangular mel filters as ``librosa.filters.mel`` (Slaney scale and area norm).

    Returns:
        float64 ``[n_fft // 2 + 1, n_mels]``: power spectrum (frequency last) times this matrix
        gives mel energies (the layout of torchlibrosa's ``melW``).
    """
    fft_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Each filter has unit area in Hz, so wide high-frequency bands are not louder.
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T


def log_mel(
    waveforms: torch.Tensor, mel_filters: torch.Tensor, front_end: WavCapsFrontEnd
) -> torch.Tensor:
    """torchlibrosa's ``Spectrogram`` + ``LogmelFilterBank`` as WavCaps configures them.

    Args:
        waveforms: float ``[batch, samples]`` at ``front_end.sample_rate``.
        mel_filters: ``[n_fft // 2 + 1, n_mels]`` from :func:`slaney_mel_filter_bank`.
        front_end: STFT parameters.

    Returns:
        ``[batch, frames, n_mels]`` log-mel in dB, ``frames = 1 + samples // hop_length``.
    """
    window = torch.hann_window(
        front_end.n_fft, periodic=True, dtype=waveforms.dtype, device=waveforms.device
    )
    spectrum = torch.stft(
        waveforms,
        front_end.n_fft,
        hop_length=front_end.hop_length,
        win_length=front_end.n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = spectrum.real.square() + spectrum.imag.square()
    mel = torch.matmul(power.transpose(1, 2), mel_filters.to(power.dtype))
    return 10.0 * torch.log10(mel.clamp(min=1e-10))


class WavCapsModel(nn.Module):
    """HTS-AT (``ClapAudioModel``) -> linear -> BART, with WavCaps' own log-mel front end.

    Submodule names follow ``BartCaptionModel`` (``encoder``, ``enc_to_dec_proj``,
    ``decoder``), so :func:`convert_wavcaps` only renames inside the audio encoder.
    """

    def __init__(self, config: WavCapsConfig) -> None:
        super().__init__()
        from transformers import BartForConditionalGeneration, ClapAudioModel

        self.config = config
        self.encoder = ClapAudioModel(config.audio)
        self.enc_to_dec_proj = nn.Linear(
            self.encoder.audio_encoder.num_features, config.text.d_model
        )
        self.decoder = BartForConditionalGeneration(config.text)
        fe = config.front_end
        filters = slaney_mel_filter_bank(fe.sample_rate, fe.n_fft, fe.n_mels, fe.f_min, fe.f_max)
        self.register_buffer("mel_filters", torch.from_numpy(filters).float(), persistent=False)
        spec = config.audio.spec_size
        # The Swin sees spec_size * freq_ratio frames (1024): one encoder step per frame.
        self.num_frames = spec * (spec // config.audio.num_mel_bins)

    def audio_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``[batch, num_samples]`` waveforms -> ``[batch, 1024, d_model]`` BART inputs_embeds."""
        features = log_mel(waveforms, self.mel_filters, self.config.front_end)
        hidden = self.encoder(input_features=features[:, None]).last_hidden_state
        # [batch, channels, freq groups, time] -> mean over frequency -> [batch, time, channels].
        steps = hidden.mean(dim=2).transpose(1, 2)
        steps = steps.repeat_interleave(self.num_frames // steps.shape[1], dim=1)
        return self.enc_to_dec_proj(steps)

    def encode(self, waveforms: torch.Tensor) -> Any:
        """The BART encoder's output (a ``BaseModelOutput``) for ``[batch, num_samples]``."""
        return self.decoder.model.encoder(inputs_embeds=self.audio_embeddings(waveforms))

    def forward(self, waveforms: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``[batch, length, vocab]`` for teacher-forced decoder inputs."""
        out = self.decoder(
            encoder_outputs=self.encode(waveforms), decoder_input_ids=decoder_input_ids
        )
        return out.logits


def _count(keys: Sequence[str], pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    if found != set(range(len(found))):
        raise WeightsError(f"layer indices {sorted(found)} of {pattern!r} are not contiguous")
    return len(found)


def _audio_key(key: str) -> str:
    """Official HTS-AT key (after ``encoder.audio_enc.``) -> ClapAudioModel key."""
    rules = (
        (r"^bn0\.", "batch_norm."),
        (r"\.norm1\.", ".layernorm_before."),
        (r"\.norm2\.", ".layernorm_after."),
        (r"\.attn\.proj\.", ".attention.output.dense."),
        (r"\.attn\.relative_position_", ".attention.self.relative_position_"),
        (r"\.mlp\.fc1\.", ".intermediate.dense."),
        (r"\.mlp\.fc2\.", ".output.dense."),
    )
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return "encoder.audio_encoder." + key


def _front_end(settings: Mapping[str, Any]) -> WavCapsFrontEnd:
    args = settings.get("audio_args") or {}
    defaults = WavCapsFrontEnd()
    return WavCapsFrontEnd(
        sample_rate=int(args.get("sr", defaults.sample_rate)),
        n_fft=int(args.get("n_fft", defaults.n_fft)),
        hop_length=int(args.get("hop_length", defaults.hop_length)),
        n_mels=int(args.get("n_mels", defaults.n_mels)),
        f_min=float(args.get("f_min", defaults.f_min)),
        f_max=float(args.get("f_max", defaults.f_max)),
    )


def convert_wavcaps(path: Path) -> tuple[dict[str, torch.Tensor], WavCapsConfig]:
    """Read an official WavCaps HTSAT-BART checkpoint into :class:`WavCapsModel` weights.

    The file is ``torch.save({"model": state_dict, "config": settings, ...})`` from their
    ``train.py``; it is read with ``weights_only=True``. HTS-AT widths, depths, heads and window
    come from the weight shapes, the front end from ``config["audio_args"]``, BART sizes from
    its weights with 64-wide attention heads (as in BART-base: 768 / 12).

    Returns:
        ``(state_dict, config)``: ``WavCapsModel(config).load_state_dict(state_dict)`` is strict.

    Raises:
        WeightsError: the file is unreadable, not a WavCaps HTSAT-BART checkpoint, or its mel
            filter bank disagrees with ours.
    """
    from transformers import BartConfig, ClapAudioConfig

    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise WeightsError(f"{path}: cannot be read as a torch checkpoint ({exc})") from exc
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise WeightsError(f"{path}: expected a WavCaps checkpoint dict with a 'model' entry")
    official: dict[str, torch.Tensor] = checkpoint["model"]
    settings = checkpoint.get("config") or {}
    arch = (settings.get("audio_encoder_args") or {}).get("model_arch", "transformer")
    if arch != "transformer" or _AUDIO + "patch_embed.proj.weight" not in official:
        raise WeightsError(
            f"{path}: not an HTS-AT WavCaps captioner (audio encoder {arch!r}); use the "
            "HTSAT-BART checkpoints (e.g. HTSAT-BART-FT-AudioCaps.pt)"
        )
    front_end = _front_end(settings)

    state: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        if key.startswith(_AUDIO):
            inner = key[len(_AUDIO) :]
            if inner == _MEL_FILTERS_KEY:
                _check_mel_filters(path, value, front_end)
            elif _DROPPED.match(inner):
                continue
            elif inner.endswith(".attn.qkv.weight") or inner.endswith(".attn.qkv.bias"):
                # Their fused projection stacks query, key, value along the output dimension.
                target = _audio_key(inner).replace(".attn.qkv.", ".attention.self.{}.")
                for name, part in zip(("query", "key", "value"), value.chunk(3), strict=True):
                    state[target.format(name)] = part.clone()
            else:
                state[_audio_key(inner)] = value
        elif key == "decoder.lm_head.weight":
            # BART ties it to the shared embedding: a different matrix is not a BART-base decoder.
            if not torch.equal(value, official["decoder.model.shared.weight"]):
                raise WeightsError(f"{path}: lm_head is not tied to the shared BART embedding")
            state[key] = value
        elif key.startswith(("decoder.", "enc_to_dec_proj.")):
            state[key] = value
        else:
            raise WeightsError(f"{path}: unexpected key {key!r} for a WavCaps HTSAT-BART model")

    # Some transformers versions leave the tied lm_head out of saved state dicts.
    state.setdefault("decoder.lm_head.weight", official["decoder.model.shared.weight"])
    keys = list(official)
    embed = official[_AUDIO + "patch_embed.proj.weight"]
    stages = _count(keys, re.escape(_AUDIO) + r"layers\.(\d+)\.")
    depths = [
        _count(keys, re.escape(_AUDIO) + rf"layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)
    ]
    tables = [
        official[_AUDIO + f"layers.{i}.blocks.0.attn.relative_position_bias_table"]
        for i in range(stages)
    ]
    window = (math.isqrt(tables[0].shape[0]) + 1) // 2
    mel_bins = official[_AUDIO + "bn0.weight"].shape[0]
    if mel_bins != _HTSAT_MEL_BINS or front_end.n_mels != mel_bins:
        raise WeightsError(
            f"{path}: HTS-AT here takes {_HTSAT_MEL_BINS} mel bins, the checkpoint has {mel_bins}"
        )
    dim = embed.shape[0]
    audio = ClapAudioConfig(
        window_size=window,
        num_mel_bins=mel_bins,
        spec_size=_SPEC_SIZE,
        patch_size=embed.shape[-1],
        patch_stride=(embed.shape[-2], embed.shape[-1]),
        patch_embeds_hidden_size=dim,
        depths=depths,
        num_attention_heads=[t.shape[1] for t in tables],
        num_hidden_layers=stages,
        hidden_size=dim * 2 ** (stages - 1),
        mlp_ratio=official[_AUDIO + "layers.0.blocks.0.mlp.fc1.weight"].shape[0] / dim,
        qkv_bias=_AUDIO + "layers.0.blocks.0.attn.qkv.bias" in official,
        enable_fusion=False,
    )

    vocab, d_model = official["decoder.model.shared.weight"].shape
    if d_model % _BART_HEAD_DIM:
        raise WeightsError(f"{path}: BART width {d_model} is not a multiple of {_BART_HEAD_DIM}")
    heads = d_model // _BART_HEAD_DIM
    text = BartConfig(
        vocab_size=vocab,
        d_model=d_model,
        encoder_layers=_count(keys, r"decoder\.model\.encoder\.layers\.(\d+)\."),
        decoder_layers=_count(keys, r"decoder\.model\.decoder\.layers\.(\d+)\."),
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=official["decoder.model.encoder.layers.0.fc1.weight"].shape[0],
        decoder_ffn_dim=official["decoder.model.decoder.layers.0.fc1.weight"].shape[0],
        # BartLearnedPositionalEmbedding keeps 2 extra rows (its offset).
        max_position_embeddings=official["decoder.model.encoder.embed_positions.weight"].shape[0]
        - 2,
    )
    return state, WavCapsConfig(audio=audio, text=text, front_end=front_end)


def _check_mel_filters(path: Path, melw: torch.Tensor, front_end: WavCapsFrontEnd) -> None:
    fe = front_end
    ours = slaney_mel_filter_bank(fe.sample_rate, fe.n_fft, fe.n_mels, fe.f_min, fe.f_max)
    theirs = melw.double().numpy()
    # librosa builds the bank in float32: agree to float32 rounding of the largest weight.
    if theirs.shape != ours.shape or not np.allclose(theirs, ours, rtol=0, atol=1e-6 * ours.max()):
        raise WeightsError(
            f"{path}: the checkpoint's mel filter bank does not match audio_args {fe}; "
            "this front end cannot reproduce it"
        )


class WavCapsCaptioner:
    """Caption soundtracks with a WavCaps HTSAT-BART checkpoint.

    Args:
        model: a :class:`WavCapsModel` with weights loaded.
        tokenizer: the BART tokenizer (facebook/bart-base).
        model_id: recorded in the output (e.g. the checkpoint file name).
        device: torch device.
        batch_size: clips per forward pass.
        num_beams: beam width (their default 3).
        max_length: longest caption in tokens, start token included (their 30).
        min_length: shortest caption, likewise (their 2).
    """

    def __init__(
        self,
        model: WavCapsModel,
        tokenizer: Any,
        *,
        model_id: str,
        device: str = "cpu",
        batch_size: int = 8,
        num_beams: int = 3,
        max_length: int = 30,
        min_length: int = 2,
    ) -> None:
        from transformers import GenerationConfig

        vocab = model.config.text.vocab_size
        if len(tokenizer) != vocab:
            raise CaptionerError(
                f"tokenizer has {len(tokenizer)} tokens but the WavCaps decoder has {vocab}; "
                f"give the BART tokenizer it was trained with ({DEFAULT_TOKENIZER})"
            )
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.device = device
        self.batch_size = batch_size
        self.sample_rate = model.config.front_end.sample_rate
        text = model.config.text
        # facebook/bart-base's config carries these generation defaults, which their generate()
        # inherited; spelled out because a config built from shapes does not.
        beam_options = {"early_stopping": True, "length_penalty": 1.0} if num_beams > 1 else {}
        self.generation_config = GenerationConfig(
            num_beams=num_beams,
            max_length=max_length,
            min_length=min_length,
            do_sample=False,
            no_repeat_ngram_size=3,
            **beam_options,
            bos_token_id=text.bos_token_id,
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
            decoder_start_token_id=text.decoder_start_token_id,
            forced_bos_token_id=text.bos_token_id,
            forced_eos_token_id=text.eos_token_id,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        num_beams: int = 3,
        max_length: int = 30,
        tokenizer_dir: str = DEFAULT_TOKENIZER,
        **options: Any,
    ) -> WavCapsCaptioner:
        """Load an official checkpoint file and the BART tokenizer (hub id or local folder)."""
        from transformers import AutoTokenizer

        state, config = convert_wavcaps(Path(path))
        tokenizer = _load(AutoTokenizer, tokenizer_dir, "BART tokenizer")
        model = WavCapsModel(config)
        model.load_state_dict(state, strict=True)
        return cls(
            model, tokenizer, model_id=Path(path).name, device=device, num_beams=num_beams,
            max_length=max_length, **options,
        )  # fmt: skip

    def _clip(self, waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
        from tavgbench.extractors.audio import resample

        wave = torch.from_numpy(np.asarray(waveform, np.float32))
        if wave.ndim != 1:
            raise ValueError(f"WavCaps captions mono waveforms, got shape {tuple(wave.shape)}")
        wave = resample(wave, sample_rate, self.sample_rate)
        # Their inference: the first max_seconds, zero-padded when shorter.
        n = self.model.config.front_end.num_samples
        return nn.functional.pad(wave[:n], (0, max(0, n - wave.shape[0])))

    def caption(
        self, waveforms: Sequence[np.ndarray], sample_rates: int | Sequence[int]
    ) -> list[str]:
        """One caption per mono waveform, each at its own rate (resampled to 32 kHz)."""
        if isinstance(sample_rates, (int, np.integer)):
            rates = [int(sample_rates)] * len(waveforms)
        else:
            rates = [int(r) for r in sample_rates]
        if len(rates) != len(waveforms):
            raise ValueError(f"{len(waveforms)} waveforms but {len(rates)} sample rates")
        captions: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(waveforms), self.batch_size):
                end = start + self.batch_size
                batch = torch.stack(
                    [
                        self._clip(w, r)
                        for w, r in zip(waveforms[start:end], rates[start:end], strict=True)
                    ]
                ).to(self.device)
                encoded = self.model.encode(batch)
                output = self.model.decoder.generate(
                    encoder_outputs=encoded, generation_config=self.generation_config
                )
                decoded = self.tokenizer.batch_decode(output, skip_special_tokens=True)
                captions.extend(text.strip() for text in decoded)
        return captions

    def caption_audio(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        """The :class:`AudioCaptioner` protocol: waveforms already at :attr:`sample_rate`."""
        return self.caption(waveforms, self.sample_rate)
