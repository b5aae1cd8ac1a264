"""Stage two of ``audioldm-tempotokens``: audio to video with TempoTokens on ZeroScope.

TempoTokens (Yariv et al., AAAI 2024, github.com/guyyariv/TempoTokens, MIT). Facts from the
reference's inference code (``inference.py``, ``train.py``'s ``load_primary_models``,
``modules/temp_tokens/embedder.py``, ``modules/fga/atten.py``,
``modules/pipelines/pipeline_audio_to_video.py``, ``modules/unet/unet_3d_condition.py``):

* Audio: 2 s at 16 kHz through BEATs (the AS2M fine-tuned iter3+ checkpoint), all 12 layers'
  outputs side by side (``[b, 96, 9216]``).
* Mapper (``TempEmbedder``, saved as ``learned_embeds.pth``): ``fc1`` 9216 -> 2304, GELU,
  ``fc2`` 2304 -> 2304, GELU, ``fc3`` -> 1024; the tokens are averaged in consecutive groups
  down to one per video frame (24), then GELU and ``fc4``. Per frame ``i`` it gives the temporal
  token, four local-window means over ``[i - w, i + w)`` for ``w`` = 1, 2, 4, 8 (clipped), and one
  clip-level token from an attentive pooling (``fga``: unary and self-pairwise potentials
  mixed by a 1x1 convolution, softmax over frames).
* Conditioning: the prompt ``"<temp> <local1> <local2> <local3> <local4> <class>"`` is
  tokenised once per frame and the six placeholder embeddings are replaced by that frame's
  tokens before ZeroScope's CLIP text encoder; frame ``i``'s cross-attention sees frame ``i``'s
  text states (their UNet drops the per-frame repeat of the context). The unconditional context
  is the empty prompt's.
* Sampling: ZeroScope v2 576w's UNet3D at 384x384, 24 frames (12 fps), DPM-Solver++ multistep
  (``DPMSolverMultistepScheduler.from_config`` of ZeroScope's scheduler config), 25 steps,
  guidance 25; the VAE decodes the frames 8 at a time and pixels are ``(x + 1) * 127.5``
  truncated to bytes.

Our choices: diffusers' stock ``UNet3DConditionModel`` gets the per-frame contexts through a
cross-attention processor (contexts of all frames laid side by side along the token axis, each
frame's row picks its own); the mapper's unary branch calls ``F.dropout`` with its default
``training=True`` in the reference, i.e. drops half its activations (and doubles the rest) at
inference too; we run it without dropout, as ``eval()`` would have had the reference passed
``training=self.training``, so a clip depends only on its seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet3DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from tavgbench.baselines.tavdiffusion.components import ByteTokenizer
from tavgbench.baselines.tavdiffusion.config import ComponentSpec
from tavgbench.baselines.twostage.beats import SAMPLE_RATE, BEATs, BEATsConfig, load_beats
from tavgbench.baselines.twostage.components import (
    WeightsMissing,
    build_part,
    freeze,
    seeded_noise,
    tokenize,
)
from tavgbench.baselines.twostage.config import ConfigError, TwoStageConfig
from tavgbench.errors import WeightsError
from tavgbench.extractors.audio import resample
from tavgbench.weights import how_to_get, registered_file

BEATS_FILE = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
MAPPER_FILE = "learned_embeds.pth"
BEATS_URL = "https://github.com/microsoft/unilm/tree/master/beats"
MAPPER_URL = "https://drive.google.com/drive/folders/10pRWoq0m5torvMXILmIQd7j9fLPEeHtS"
# Placeholder tokens per frame: temporal, four local windows, the clip-level token.
TOKENS_PER_FRAME = 6
LOCAL_WINDOWS = (1, 2, 4, 8)
VIDEO_SALT = 0


# --- the mapper ------------------------------------------------------------------------------


class Unary(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed = nn.Conv1d(dim, dim, 1)
        self.feature_reduce = nn.Conv1d(dim, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[b, n, d]`` to one potential per element ``[b, n]``."""
        return self.feature_reduce(F.relu(self.embed(x.transpose(1, 2)))).squeeze(1)


class Pairwise(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed_X = nn.Conv1d(dim, dim, 1)
        self.embed_Y = nn.Conv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean cosine similarity of each element to all others (self-interaction) ``[b, n]``."""
        xt = x.transpose(1, 2)
        a = F.normalize(self.embed_X(xt), dim=1)
        b = F.normalize(self.embed_Y(xt), dim=1)
        return (a.transpose(1, 2) @ b).mean(dim=2)


class AttentivePooling(nn.Module):
    """The reference's one-utility ``Atten`` (unary + self potentials): ``[b, n, d] -> [b, d]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.un_models = nn.ModuleList([Unary(dim)])
        self.pp_models = nn.ModuleDict({"0": Pairwise(dim)})
        self.reduce_potentials = nn.ModuleList([nn.Conv1d(2, 1, 1, bias=False)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        potentials = torch.stack([self.un_models[0](x), self.pp_models["0"](x)], dim=1)
        weights = self.reduce_potentials[0](potentials).squeeze(1).softmax(dim=1)
        return (x.transpose(1, 2) @ weights.unsqueeze(2)).squeeze(2)


class TempoTokensMapper(nn.Module):
    """BEATs features ``[b, tokens, input_size]`` to per-frame pseudo-tokens
    ``[b, frames, 6, output_size]`` (temporal, local 1-4, clip-level), ``TempEmbedder``'s layout.
    """

    def __init__(
        self,
        input_size: int = 9216,
        hidden_size: int = 2304,
        output_size: int = 1024,
        seq_target_length: int = 24,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.seq_target_length = seq_target_length
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)
        self.fc3 = nn.Linear(hidden_size, output_size)
        self.fc4 = nn.Linear(output_size, output_size)
        self.fga = AttentivePooling(output_size)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, n, _ = features.shape
        if n % self.seq_target_length:
            raise ValueError(
                f"TempoTokens mapper: {n} audio tokens do not split into "
                f"{self.seq_target_length} frames"
            )
        x = self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(features)))))
        x = x.view(b, self.seq_target_length, -1, self.output_size).mean(dim=2)
        x = self.fc4(F.gelu(x))
        frames = x.shape[1]
        tokens = [x]
        for w in LOCAL_WINDOWS:
            tokens.append(
                torch.stack(
                    [x[:, max(i - w, 0) : min(i + w, frames)].mean(dim=1) for i in range(frames)],
                    dim=1,
                )
            )
        tokens.append(self.fga(x)[:, None].expand(b, frames, self.output_size))
        return torch.stack(tokens, dim=2)


def convert_mapper(path: Path) -> dict[str, torch.Tensor]:
    """``learned_embeds.pth`` (the ``TempEmbedder`` state dict) to :class:`TempoTokensMapper`'s."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise WeightsError(f"{path}: TempoTokens mapper checkpoint not found") from exc
    except Exception as exc:
        raise WeightsError(
            f"{path}: not a loadable PyTorch checkpoint ({exc}); re-download it"
        ) from exc
    if not isinstance(data, dict) or not any(str(k).endswith("fc1.weight") for k in data):
        raise WeightsError(f"{path}: no fc1 weights; is this TempoTokens' learned_embeds.pth?")
    # Saved from a DistributedDataParallel wrapper the keys carry `module.`.
    return {k.removeprefix("module."): v for k, v in data.items() if torch.is_tensor(v)}


def mapper_options(state: dict[str, torch.Tensor], seq_target_length: int) -> dict[str, int]:
    """The constructor arguments that fit a mapper state dict."""
    hidden, inputs = state["fc1.weight"].shape
    return {
        "input_size": int(inputs),
        "hidden_size": int(hidden),
        "output_size": int(state["fc4.weight"].shape[0]),
        "seq_target_length": seq_target_length,
    }


# --- per-frame cross-attention ---------------------------------------------------------------


class PerFrameCrossAttention:
    """Cross-attention where row ``i`` of the ``(batch, frame)`` rows sees its frame's context.

    The UNet repeats the context ``[b, frames * tokens, d]`` once per frame; each row keeps the
    ``tokens`` slice of its own frame (frame ``i % frames``).
    """

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.inner = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            rows, length, dim = encoder_hidden_states.shape
            frames = length // self.tokens
            per_frame = encoder_hidden_states.view(rows, frames, self.tokens, dim)
            index = torch.arange(rows, device=per_frame.device)
            encoder_hidden_states = per_frame[index, index % frames]
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


def use_per_frame_contexts(unet: nn.Module, tokens: int) -> None:
    """Give every cross-attention of ``unet`` a :class:`PerFrameCrossAttention` processor."""
    for module in unet.modules():
        if isinstance(module, Attention) and module.is_cross_attention:
            module.set_processor(PerFrameCrossAttention(tokens))


# --- the audio-to-video stage ----------------------------------------------------------------


def resolve_file(spec: ComponentSpec, checkpoint_dir: str | Path | None, name: str) -> Path:
    """The local file ``name`` of a TempoTokens part (``checkpoint_dir`` first, then ``spec``)."""
    where = {BEATS_FILE: BEATS_URL, MAPPER_FILE: f"{MAPPER_URL} (vggsound/{MAPPER_FILE})"}
    hint = (
        f"download {name} from {where.get(name, 'its release')} (check its licence) and pass "
        "its folder as --checkpoint, or use config='tiny'"
    )
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir) / name
        if not path.is_file():
            raise WeightsMissing(f"{path}: TempoTokens checkpoint not found; {hint}")
        return path
    if not spec.pretrained:
        raise WeightsMissing(f"TempoTokens: the config gives no source for {name}; {hint}")
    path = Path(spec.source) / spec.subfolder
    if path.is_file():
        return path
    cached = registered_file(name)
    if cached is None:
        raise WeightsMissing(
            f"{path}: TempoTokens checkpoint not found; {how_to_get(name)}; or {hint}"
        )
    return cached


class TempoTokensVideo:
    """16 kHz soundtracks to ``uint8 [b, f, h, w, 3]`` frames at ``config.fps``."""

    def __init__(
        self,
        config: TwoStageConfig,
        device: str | torch.device = "cpu",
        *,
        checkpoint_dir: str | Path | None = None,
    ) -> None:
        self.config = config
        specs = config.components
        self.tokenizer = build_part(
            specs["zeroscope_tokenizer"],
            "ZeroScope tokenizer",
            CLIPTokenizer,
            lambda c: ByteTokenizer(c.get("max_length", config.max_text_length)),
        )
        self.text_encoder = build_part(
            specs["zeroscope_text_encoder"],
            "ZeroScope text encoder",
            CLIPTextModel,
            lambda c: CLIPTextModel(CLIPTextConfig(**c)),
        )
        self.vae = build_part(
            specs["zeroscope_vae"], "ZeroScope VAE", AutoencoderKL, lambda c: AutoencoderKL(**c)
        )
        self.unet = build_part(
            specs["zeroscope_unet"],
            "ZeroScope UNet",
            UNet3DConditionModel,
            lambda c: UNet3DConditionModel(**c),
        )
        beats = specs["beats"]
        if checkpoint_dir is not None or beats.pretrained:
            self.beats = load_beats(resolve_file(beats, checkpoint_dir, BEATS_FILE))
        else:
            self.beats = BEATs(BEATsConfig(**beats.config))
        mapper = specs["mapper"]
        if checkpoint_dir is not None or mapper.pretrained:
            path = resolve_file(mapper, checkpoint_dir, MAPPER_FILE)
            state = convert_mapper(path)
            self.mapper = TempoTokensMapper(**mapper_options(state, config.num_frames))
            try:
                self.mapper.load_state_dict(state)
            except RuntimeError as exc:
                raise WeightsError(f"{path}: not a TempoTokens mapper ({exc})") from exc
        else:
            self.mapper = TempoTokensMapper(**mapper.config)
        self._check_shapes()
        self.slots = self._placeholder_ids()
        use_per_frame_contexts(self.unet, self.slots.shape[-1])
        freeze(self.text_encoder, self.vae, self.unet, self.beats, self.mapper)
        self.to(device)

    def _check_shapes(self) -> None:
        c = self.config
        name = f"config {c.name!r}"
        if self.mapper.seq_target_length != c.num_frames:
            raise ConfigError(
                f"{name}: the TempoTokens mapper makes {self.mapper.seq_target_length} frames' "
                f"tokens, the config asks for {c.num_frames} frames"
            )
        tokens = self.beats.config.num_tokens(round(c.duration * SAMPLE_RATE))
        if tokens == 0 or tokens % c.num_frames:
            raise ConfigError(
                f"{name}: {c.duration:g} s of audio gives {tokens} BEATs tokens, which do not "
                f"split into {c.num_frames} frames (the reference: 2 s, 24 frames)"
            )
        if self.mapper.fc1.in_features != self.beats.config.output_dim:
            raise ConfigError(
                f"{name}: the mapper takes {self.mapper.fc1.in_features}-d features, BEATs "
                f"gives {self.beats.config.output_dim}"
            )

    def _placeholder_ids(self) -> torch.Tensor:
        """Token ids of the reference prompt: start, six placeholders, end, padding.

        The placeholders' own embeddings are replaced, so any id will do; we reuse the padding
        id, which keeps the text encoder's vocabulary as published.
        """
        ids, _ = tokenize(self.tokenizer, [""], self.config.max_text_length)
        ids = ids[0]
        if len(ids) < TOKENS_PER_FRAME + 2:
            raise ConfigError(f"config {self.config.name!r}: max_text_length is too short")
        return torch.cat([ids[:1], ids[-1:].repeat(TOKENS_PER_FRAME), ids[1:-TOKENS_PER_FRAME]])

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> TempoTokensVideo:
        """Move every part; ``dtype`` casts ZeroScope's (BEATs and the mapper stay float32:
        their tokens are cast where they enter the text encoder)."""
        self.device = torch.device(device)
        for module in (self.text_encoder, self.vae, self.unet):
            module.to(self.device, dtype)
        for module in (self.beats, self.mapper):
            module.to(self.device)
        return self

    def scheduler(self) -> DPMSolverMultistepScheduler:
        # What `from_config` makes of ZeroScope's (DDIM) scheduler config: its betas and
        # steps_offset, the solver's own defaults otherwise (DPM-Solver++ 2nd order, epsilon,
        # linspace timesteps: the config predates `timestep_spacing`).
        c = self.config
        return DPMSolverMultistepScheduler(
            num_train_timesteps=1000,
            beta_start=c.video_beta_start,
            beta_end=c.video_beta_end,
            beta_schedule=c.video_beta_schedule,
            steps_offset=1,
        )

    @torch.no_grad()
    def frame_tokens(self, waveforms: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Soundtracks ``[b, samples]`` to the mapper's tokens ``[b, frames, 6, d]``."""
        wave = torch.from_numpy(np.asarray(waveforms, dtype=np.float32))
        if sample_rate != SAMPLE_RATE:
            wave = resample(wave, sample_rate, SAMPLE_RATE)
        n = round(self.config.duration * SAMPLE_RATE)
        wave = F.pad(wave[:, :n], (0, max(0, n - wave.shape[1])))
        return self.mapper(self.beats(wave))

    @torch.no_grad()
    def contexts(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame text states (``[b, frames * L, d]``) and the empty prompt's (``[1, L, d]``)."""
        b, frames = tokens.shape[:2]
        ids = self.slots.to(self.device).repeat(b * frames, 1)
        replace = tokens.flatten(0, 1)
        embedding = self.text_encoder.get_input_embeddings()

        def insert(_: nn.Module, __: Any, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            output[:, 1 : 1 + TOKENS_PER_FRAME] = replace.to(output.dtype)
            return output

        handle = embedding.register_forward_hook(insert)
        try:
            states = self.text_encoder(ids)[0]
        finally:
            handle.remove()
        empty, _ = tokenize(self.tokenizer, [""], self.config.max_text_length)
        uncond = self.text_encoder(empty.to(self.device))[0]
        return states.reshape(b, frames * states.shape[1], -1), uncond

    def latent_shape(self) -> tuple[int, ...]:
        c = self.config
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return (self.unet.config.in_channels, c.num_frames, c.height // factor, c.width // factor)

    @torch.no_grad()
    def generate(
        self,
        waveforms: np.ndarray,
        sample_rate: int,
        seeds: list[int],
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> np.ndarray:
        c = self.config
        dtype = self.unet.dtype
        scale = c.video_guidance if guidance_scale is None else guidance_scale
        tokens = self.frame_tokens(waveforms, sample_rate)
        cond, uncond = self.contexts(tokens)
        b = cond.shape[0]
        uncond = uncond.repeat(b, c.num_frames, 1)
        context = torch.cat([uncond, cond]).to(dtype)
        sched = self.scheduler()
        sched.set_timesteps(num_inference_steps or c.video_steps, device=self.device)
        latents = seeded_noise(self.latent_shape(), list(seeds), VIDEO_SALT).to(self.device, dtype)
        latents = latents * sched.init_noise_sigma
        for t in sched.timesteps:
            model_in = sched.scale_model_input(torch.cat([latents, latents]), t)
            eps = self.unet(model_in, t, encoder_hidden_states=context).sample
            eps_uncond, eps_cond = eps.chunk(2)
            guided = eps_uncond + scale * (eps_cond - eps_uncond)
            latents = sched.step(guided, t, latents).prev_sample
        return self.decode(latents)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """Latents ``[b, c, f, h, w]`` to ``uint8 [b, f, H, W, 3]``, ``vae_chunk`` frames a call.

        Pixels are ``(x + 1) * 127.5`` truncated, as the reference writes them.
        """
        chunk = self.config.vae_chunk
        videos = []
        # Clip by clip, so a clip's chunks do not depend on the other clips of its batch.
        for clip in latents.permute(0, 2, 1, 3, 4) / self.vae.config.scaling_factor:
            pixels = torch.cat(
                [self.vae.decode(clip[i : i + chunk]).sample for i in range(0, len(clip), chunk)]
            )
            videos.append(((pixels.float().clamp(-1, 1) + 1) * 127.5).to(torch.uint8))
        return torch.stack(videos).permute(0, 1, 3, 4, 2).cpu().numpy()
