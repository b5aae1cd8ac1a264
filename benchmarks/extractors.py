"""Extractor throughput and memory: end to end against the bare network, I3D against a plain
reference forward.

For each extractor (I3D, CLIP ViT-B/32, VGGish, ImageBind vision and audio) on synthetic clips
(256x320 frames, a 16 kHz soundtrack) this prints:

* clips/s end to end: the extractor's public ``embed_*`` call on raw uint8 frames or waveforms
  (preprocessing, batching, transfers, forward);
* clips/s of the bare network on input preprocessed beforehand, with the same batches, and the
  ratio end-to-end time / bare time (target: <= 1.25);
* the memory the model takes and the peak while embedding (resident memory on CPU,
  ``torch.cuda.max_memory_allocated`` on CUDA);
* for I3D, the ratio of our end-to-end time to a plain reference forward written here
  (``F.interpolate`` + the same network in float32, one clip at a time under ``no_grad``), on
  the same input in the same process (target: >= 1), and the largest difference of the features.

Weights are random (speed does not depend on their values) unless the tavgbench weights cache
(``TAVGBENCH_HOME``) holds the real checkpoint. ImageBind runs in a reduced configuration unless
``--full`` is given (the huge model takes minutes per clip on a laptop CPU).
:mod:`benchmarks.gpu_extractors` reuses the builders and the runner of this module.

Run from the repository root::

    python -m benchmarks.extractors                     # 4 clips of 10 s, best of 3
    python -m benchmarks.extractors --only i3d --clips 8
    python -m benchmarks.extractors --clips 2 --quick    # smoke test, tiny models
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.decode import MIB, PeakRSS, ratio_line, rss_bytes, timed

NAMES = ("i3d", "clip", "vggish", "imagebind")
SAMPLE_RATE = 16000
#: ImageBind embeds every frame; generated clips are 24 fps.
FPS = 24
FRAME_SIZE = (256, 320)  # height, width
#: Distinct synthetic clips; longer inputs cycle through them (content does not change speed).
POOL = 4

Scale = Literal["quick", "default", "full"]


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class Inputs:
    """Synthetic clips, as decoding would give them.

    Attributes:
        sampled: per clip, uint8 ``[frames, h, w, 3]``: the evenly spaced frames I3D and CLIP
            take.
        every: per clip, uint8 ``[seconds * fps, h, w, 3]``: every frame, as ImageBind takes.
        waveforms: per clip, float32 mono ``[seconds * 16000]``.
        seconds: clip duration.
        fps: frame rate of ``every``.
    """

    sampled: list[np.ndarray]
    every: list[np.ndarray]
    waveforms: list[np.ndarray]
    seconds: float
    fps: float


def make_inputs(
    clips: int,
    *,
    seconds: float,
    fps: float,
    sampled_frames: int,
    every_clips: int | None = None,
    seed: int = 0,
) -> Inputs:
    """``clips`` synthetic clips cycling through :data:`POOL` distinct random ones.

    Args:
        clips: number of clips for the sampled frames and the waveforms.
        seconds: clip duration (sets the frame count of ``every`` and the waveform length).
        fps: frame rate of ``every``.
        sampled_frames: frames per clip in ``sampled``.
        every_clips: number of clips in ``every`` (default: ``clips``).
        seed: random seed.
    """
    rng = np.random.default_rng(seed)
    height, width = FRAME_SIZE
    n_every = clips if every_clips is None else every_clips
    distinct = min(POOL, max(clips, n_every))
    every_pool = [
        rng.integers(0, 256, (round(seconds * fps), height, width, 3), dtype=np.uint8)
        for _ in range(min(distinct, n_every))
    ]
    sampled_pool = [
        rng.integers(0, 256, (sampled_frames, height, width, 3), dtype=np.uint8)
        for _ in range(distinct)
    ]
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave_pool = [
        (
            0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
            + 0.05 * rng.standard_normal(t.size)
        ).astype(np.float32)
        for _ in range(distinct)
    ]
    return Inputs(
        sampled=[sampled_pool[i % distinct] for i in range(clips)],
        every=[every_pool[i % len(every_pool)] for i in range(n_every)] if every_pool else [],
        waveforms=[wave_pool[i % distinct] for i in range(clips)],
        seconds=seconds,
        fps=fps,
    )


def run_inputs(
    clips: int, *, quick: bool, seconds: float, every_clips: int | None = None
) -> Inputs:
    """The inputs of a benchmark run: 16 sampled frames per clip and every frame at 24 fps; in a
    quick run 1 s clips, 10 sampled frames (I3D's minimum) and 4 frames per second."""
    if quick:
        return make_inputs(clips, seconds=1.0, fps=4, sampled_frames=10, every_clips=every_clips)
    return make_inputs(clips, seconds=seconds, fps=FPS, sampled_frames=16, every_clips=every_clips)


# ---------------------------------------------------------------------------------------------
# What is measured


@dataclass
class Bench:
    """One extractor path under test.

    Attributes:
        label: row name (``"i3d"``, ``"imagebind-vision"``...).
        unit: what one clip is for this row (``"16 frames"``, ``"10 s audio"``...).
        clips: number of clips each call embeds.
        end_to_end: the public extractor call on raw input; returns the features.
        prepare: preprocesses the input (untimed) and returns the bare network call on it.
        reference: a plain reference implementation of the same features, when there is one.
    """

    label: str
    unit: str
    clips: int
    end_to_end: Callable[[], Any]
    prepare: Callable[[], Callable[[], Any]]
    reference: Callable[[], np.ndarray] | None = None


@dataclass
class Built:
    """An extractor's benches, which weights it runs, and the bytes of its parameters and
    buffers."""

    weights: str
    model_bytes: int
    benches: list[Bench] = field(default_factory=list)


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class Settings:
    """How extractors are built and run.

    Attributes:
        device: torch device.
        scale: ``"quick"`` (tiny models, smoke test), ``"default"`` (full-size I3D, CLIP and
            VGGish, reduced ImageBind), ``"full"`` (everything full size).
        bf16: run every call under bfloat16 autocast (CUDA only; changes the features).
    """

    device: torch.device
    scale: Scale = "default"
    bf16: bool = False


def _batches(items: int, size: int) -> Iterator[slice]:
    for start in range(0, items, size):
        yield slice(start, min(start + size, items))


def _cached(name: str) -> bool:
    """Whether the weights cache holds the default checkpoint of extractor ``name``."""
    from tavgbench import weights as registry
    from tavgbench.extractors import EXTRACTORS

    return registry.status(EXTRACTORS[name][1])["state"] == "ready"


def _load_cached(name: str, settings: Settings, **options: Any) -> tuple[Any, str]:
    from tavgbench.extractors import load_extractor

    extractor = load_extractor(name, settings.device, **options)
    return extractor, f"{extractor.weights} ({extractor.weights_sha256[:12]})"


RANDOM = "random init (speed does not depend on the values)"


# ---------------------------------------------------------------------------------------------
# I3D


def plain_reference_i3d(
    model: torch.nn.Module, clips: Sequence[np.ndarray], size: int
) -> np.ndarray:
    """FVD features the straightforward way: one clip at a time, float32, under ``no_grad``.

    The google-research FVD preprocessing (bilinear resize straight to ``size x size``, then
    ``2 x / 255 - 1``) with ``F.interpolate``, and the network called on ``[1, 3, t, h, w]``.
    """
    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for clip in clips:
            # The memory layout stays whatever permute and interpolate leave, as in a plain
            # implementation (it happens to be channels-last; no layout is chosen on purpose).
            video = torch.from_numpy(clip).to(device).permute(0, 3, 1, 2).float()
            video = F.interpolate(video, size=(size, size), mode="bilinear", align_corners=False)
            video = 2.0 * video / 255.0 - 1.0
            outputs.append(model(video.permute(1, 0, 2, 3)[None]).float().cpu())
    return torch.cat(outputs).numpy()


def build_i3d(inputs: Inputs, settings: Settings) -> Built:
    """Full-size I3D (Kinetics-400 logits, ``tf`` protocol); quick: 10 frames at 193 px."""
    from tavgbench.extractors.i3d import I3D, I3DExtractor

    frames = inputs.sampled[0].shape[0]
    size = 193 if settings.scale == "quick" else 224
    if settings.scale != "quick" and _cached("i3d"):
        extractor, weights = _load_cached("i3d", settings, num_frames=frames, size=size)
    else:
        with settings.device:
            model = I3D()
        extractor = I3DExtractor(model, device=settings.device, num_frames=frames, size=size)
        weights = RANDOM
    clips = np.stack(inputs.sampled)

    def prepare() -> Callable[[], Any]:
        batch = torch.from_numpy(clips).to(settings.device).permute(0, 1, 4, 2, 3).float()
        flat = F.interpolate(
            batch.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False
        )
        video = (2.0 * flat / 255.0 - 1.0).view(len(clips), frames, 3, size, size)
        video = video.transpose(1, 2).contiguous()
        del batch, flat

        def bare() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [
                    extractor.model(video[part])
                    for part in _batches(len(video), extractor.batch_size)
                ]

        return bare

    bench = Bench(
        label="i3d",
        unit=f"{frames} frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]} -> {size}",
        clips=len(clips),
        end_to_end=lambda: extractor.embed_frames(clips),
        prepare=prepare,
        reference=lambda: plain_reference_i3d(extractor.model, inputs.sampled, size),
    )
    return Built(weights, model_bytes(extractor.model), [bench])


# ---------------------------------------------------------------------------------------------
# CLIP


def clip_config(scale: Scale) -> Any:
    """OpenAI CLIP ViT-B/32's architecture (the hub config's values), or a tiny one."""
    from transformers import CLIPConfig

    text: dict[str, Any] = {"vocab_size": 49408, "max_position_embeddings": 77}
    vision: dict[str, Any] = {"image_size": 224, "patch_size": 32}
    if scale == "quick":
        tiny = {"hidden_size": 64, "intermediate_size": 128}
        tiny |= {"num_hidden_layers": 2, "num_attention_heads": 4}
        text |= tiny
        vision |= tiny
    else:
        text |= {"hidden_size": 512, "intermediate_size": 2048}
        text |= {"num_hidden_layers": 12, "num_attention_heads": 8}
        vision |= {"hidden_size": 768, "intermediate_size": 3072}
        vision |= {"num_hidden_layers": 12, "num_attention_heads": 12}
    for part in (text, vision):
        part["hidden_act"] = "quick_gelu"
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)


def placeholder_tokenizer() -> Any:
    """A CLIP tokenizer with only the two special tokens.

    The extractor needs one, but the benchmark embeds frames only; the real vocabulary comes
    with the real weights.
    """
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp, "vocab.json"), Path(tmp, "merges.txt")
        vocab.write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1}))
        merges.write_text("#version: 0.2\n")
        # Positional: the keywords are vocab_file/merges_file in transformers 4, vocab/merges in 5.
        return CLIPTokenizer(str(vocab), str(merges))


def build_clip(inputs: Inputs, settings: Settings) -> Built:
    """CLIP ViT-B/32 per-frame image embeddings (quick: a tiny CLIP)."""
    from transformers import CLIPModel

    from tavgbench.extractors.clip import CLIPExtractor, preprocess_frames

    if settings.scale != "quick" and _cached("clip"):
        extractor, weights = _load_cached("clip", settings)
    else:
        with settings.device:
            model = CLIPModel(clip_config(settings.scale))
        extractor = CLIPExtractor(model, placeholder_tokenizer(), device=settings.device)
        weights = RANDOM
    clips = inputs.sampled

    def prepare() -> Callable[[], Any]:
        pixels = torch.from_numpy(np.concatenate([preprocess_frames(c) for c in clips]))
        pixels = pixels.to(settings.device)
        model = extractor.model

        def bare() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [
                    model.visual_projection(
                        model.vision_model(pixel_values=pixels[part]).pooler_output
                    )
                    for part in _batches(len(pixels), extractor.batch_size)
                ]

        return bare

    bench = Bench(
        label="clip",
        unit=f"{clips[0].shape[0]} frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]}",
        clips=len(clips),
        end_to_end=lambda: extractor.embed_frames(clips),
        prepare=prepare,
    )
    return Built(weights, model_bytes(extractor.model), [bench])


# ---------------------------------------------------------------------------------------------
# VGGish


def build_vggish(inputs: Inputs, settings: Settings) -> Built:
    """VGGish (full size at every scale: it is small) on the audioldm FAD protocol."""
    from tavgbench.extractors.audio import vggish_examples
    from tavgbench.extractors.vggish import VGGish, VGGishExtractor

    if settings.scale != "quick" and _cached("vggish"):
        extractor, weights = _load_cached("vggish", settings)
    else:
        with settings.device:
            model = VGGish()
        extractor = VGGishExtractor(model, device=settings.device)
        weights = RANDOM
    waveforms = inputs.waveforms

    def prepare() -> Callable[[], Any]:
        examples = torch.cat(
            [
                vggish_examples(torch.from_numpy(w), SAMPLE_RATE, extractor.fad_protocol)
                for w in waveforms
            ]
        ).to(settings.device)

        def bare() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [
                    extractor.model(examples[part])
                    for part in _batches(len(examples), extractor.batch_size)
                ]

        return bare

    bench = Bench(
        label="vggish",
        unit=f"{inputs.seconds:g} s audio",
        clips=len(waveforms),
        end_to_end=lambda: extractor.embed_audio_examples(waveforms, SAMPLE_RATE),
        prepare=prepare,
    )
    return Built(weights, model_bytes(extractor.model), [bench])


# ---------------------------------------------------------------------------------------------
# ImageBind


def imagebind_config(scale: Scale) -> dict[str, Any] | None:
    """``None`` (the huge model) for ``full``; otherwise a narrower, shallower configuration of
    the same layout (same patching, token counts and preprocessing)."""
    if scale == "full":
        return None
    if scale == "quick":
        dims = {"embed_dim": 32, "num_blocks": 1, "num_heads": 2}
        out = 32
    else:
        dims = {"embed_dim": 192, "num_blocks": 4, "num_heads": 3}
        out = 256
    config: dict[str, Any] = {"out_embed_dim": out}
    for modality in ("vision", "audio", "text"):
        config |= {f"{modality}_{key}": value for key, value in dims.items()}
    return config


def build_imagebind(inputs: Inputs, settings: Settings) -> Built:
    """ImageBind vision (every frame) and audio (3 clips of 2 s per soundtrack)."""
    from tavgbench.extractors.audio import imagebind_audio_clips
    from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor

    dtype = "bfloat16" if settings.bf16 else "float32"
    config = imagebind_config(settings.scale)
    if settings.scale == "full" and _cached("imagebind"):
        extractor, weights = _load_cached("imagebind", settings, dtype=dtype)
    else:
        with settings.device:
            model = ImageBindEncoders.from_config(config)
        extractor = ImageBindExtractor(model, device=settings.device, dtype=dtype)
        weights = RANDOM
    if config is None:
        weights += ", huge"
    else:
        shape = {key: config[f"vision_{key}"] for key in ("embed_dim", "num_blocks", "num_heads")}
        weights += f", reduced: every tower {shape}, output {config['out_embed_dim']}"
    frames, waveforms = inputs.every, inputs.waveforms

    def prepare_vision() -> Callable[[], Any]:
        images = [extractor.preprocess_frames(torch.from_numpy(c)) for c in frames]

        def bare() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [
                    extractor.model.encode("vision", clip[part])
                    for clip in images
                    for part in _batches(len(clip), extractor.batch_size)
                ]

        return bare

    def prepare_audio() -> Callable[[], Any]:
        fbanks = torch.stack(
            [imagebind_audio_clips(torch.from_numpy(w), SAMPLE_RATE) for w in waveforms]
        ).to(settings.device)
        # As embed_audio batches: a third of the batch size in soundtracks of 3 clips each.
        per_batch = max(1, extractor.batch_size // 3)

        def bare() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [
                    extractor.model({"audio": fbanks[part]})["audio"]
                    for part in _batches(len(fbanks), per_batch)
                ]

        return bare

    benches = [
        Bench(
            label="imagebind-vision",
            unit=f"{len(frames[0]) if frames else 0} frames ({inputs.seconds:g} s at "
            f"{inputs.fps:g} fps)",
            clips=len(frames),
            end_to_end=lambda: extractor.embed_frames(frames),
            prepare=prepare_vision,
        ),
        Bench(
            label="imagebind-audio",
            unit=f"{inputs.seconds:g} s audio",
            clips=len(waveforms),
            end_to_end=lambda: extractor.embed_audio(waveforms, SAMPLE_RATE),
            prepare=prepare_audio,
        ),
    ]
    return Built(weights, model_bytes(extractor.model), [b for b in benches if b.clips])


BUILDERS: dict[str, Callable[[Inputs, Settings], Built]] = {
    "i3d": build_i3d,
    "clip": build_clip,
    "vggish": build_vggish,
    "imagebind": build_imagebind,
}


# ---------------------------------------------------------------------------------------------
# The runner


class MemoryProbe:
    """Memory while a block runs: resident bytes on CPU (sampled), allocated bytes on CUDA.

    Attributes:
        start: bytes when the block began.
        peak: largest bytes seen during it.
        end: bytes when it ended.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start = self.peak = self.end = 0
        self._rss: PeakRSS | None = None

    def __enter__(self) -> MemoryProbe:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self._rss = PeakRSS().__enter__()
            self.start = self._rss.start
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
            self.end = torch.cuda.memory_allocated(self.device)
        else:
            assert self._rss is not None
            self._rss.__exit__(*exc_info)
            self.peak, self.end = self._rss.peak, self._rss.end


def memory_now(device: torch.device) -> int:
    """Bytes in use now: allocated on CUDA, resident on CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return rss_bytes()


def release_freed_memory(device: torch.device) -> None:
    """Collect garbage and hand freed memory back, so the next baseline starts clean.

    glibc keeps freed heap memory mapped, which would count the previous extractor's tensors in
    the next one's resident baseline; ``malloc_trim`` returns it to the system.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _call(fn: Callable[[], Any], settings: Settings) -> Callable[[], Any]:
    """``fn`` under the run's autocast, returning only once the device is done."""

    def run() -> Any:
        autocast = (
            torch.autocast(settings.device.type, dtype=torch.bfloat16)
            if settings.bf16
            else contextlib.nullcontext()
        )
        with autocast:
            result = fn()
        if settings.device.type == "cuda":
            torch.cuda.synchronize(settings.device)
        return result

    return run


def run_bench(
    bench: Bench, settings: Settings, *, repeat: int, warmup: bool, baseline: int
) -> dict[str, Any]:
    """Time one bench: end to end, bare (and reference), best of ``repeat`` interleaved rounds.

    The first end-to-end call runs under the memory probe, before the bare input exists; with
    ``warmup`` it is untimed and bare and reference get one untimed call each too.

    Args:
        bench: what to run.
        settings: device and autocast.
        repeat: timed rounds.
        warmup: whether the first calls are warm-up.
        baseline: memory (bytes) before the extractor was built, subtracted from the peak.
    """
    end_to_end = _call(bench.end_to_end, settings)
    with MemoryProbe(settings.device) as memory:
        first, features = timed(end_to_end)
    calls = {"end_to_end": end_to_end, "bare": _call(bench.prepare(), settings)}
    if bench.reference is not None:
        calls["reference"] = _call(bench.reference, settings)
    best = {key: math.inf for key in calls}
    outputs: dict[str, Any] = {}
    if warmup:
        for key in ("bare", "reference"):
            if key in calls:
                calls[key]()
    else:
        best["end_to_end"] = first
    for _ in range(repeat if warmup else 1):
        for key, fn in calls.items():
            if key == "end_to_end" and not warmup:
                continue
            seconds, outputs[key] = timed(fn)
            best[key] = min(best[key], seconds)
    result: dict[str, Any] = {
        "label": bench.label,
        "unit": bench.unit,
        "clips": bench.clips,
        "end_to_end_clips_per_s": bench.clips / best["end_to_end"],
        "bare_clips_per_s": bench.clips / best["bare"],
        "end_to_end_over_bare": best["end_to_end"] / best["bare"],
        "peak_mib": memory.peak / MIB,
        "peak_over_baseline_mib": (memory.peak - baseline) / MIB,
    }
    if bench.reference is not None:
        reference = outputs["reference"]
        result["reference_clips_per_s"] = bench.clips / best["reference"]
        result["ours_over_reference_speed"] = best["reference"] / best["end_to_end"]
        result["max_abs_diff_vs_reference"] = float(np.abs(features - reference).max())
    return result


def run_extractor(
    name: str, inputs: Inputs, settings: Settings, *, repeat: int, warmup: bool
) -> tuple[str, float, list[dict[str, Any]]]:
    """Build one extractor and run its benches.

    Returns:
        The weights used, the MiB of the model's parameters and buffers, and one result per
        bench.
    """
    release_freed_memory(settings.device)
    baseline = memory_now(settings.device)
    built = BUILDERS[name](inputs, settings)
    results = [
        run_bench(bench, settings, repeat=repeat, warmup=warmup, baseline=baseline)
        for bench in built.benches
    ]
    weights, size = built.weights, built.model_bytes
    del built
    release_freed_memory(settings.device)
    return weights, size / MIB, results


def print_result(result: dict[str, Any], memory_label: str) -> None:
    """The lines of one bench."""
    print(f"{result['label']}  ({result['clips']} clips of {result['unit']})")
    print(
        f"  end to end {result['end_to_end_clips_per_s']:9.3g} clips/s   "
        f"bare forward {result['bare_clips_per_s']:9.3g} clips/s"
    )
    print(
        ratio_line("end-to-end time / bare forward time", result["end_to_end_over_bare"], "<= 1.25")
    )
    if "reference_clips_per_s" in result:
        print(
            f"  plain reference forward {result['reference_clips_per_s']:9.3g} clips/s, "
            f"max |ours - reference| {result['max_abs_diff_vs_reference']:.2e}"
        )
        print(
            ratio_line("speed ours / plain reference", result["ours_over_reference_speed"], ">= 1")
        )
    print(
        f"  {memory_label}: peak {result['peak_mib']:.0f} MiB "
        f"({result['peak_over_baseline_mib']:+.0f} MiB over the process before the model was built)"
    )


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extractors",
        description="Extractor throughput and memory on CPU, end to end against the bare "
        "network; I3D against a plain reference forward.",
    )
    parser.add_argument("--clips", type=int, default=4, help="clips per extractor. Default: 4.")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed rounds, best kept. Default: 3."
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="clip duration (audio length, and ImageBind's frames at 24 fps). Default: 10.",
    )
    parser.add_argument(
        "--only", nargs="+", choices=NAMES, default=list(NAMES), help="extractors to run."
    )
    parser.add_argument("--full", action="store_true", help="ImageBind huge instead of reduced.")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice). On a machine shared with other jobs, "
        "1 gives steadier numbers: spinning OpenMP threads slow down many times over when they "
        "compete for cores.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny models, 1 s clips, one round, no warm-up "
        "(smoke test; the numbers mean nothing).",
    )
    args = parser.parse_args(argv)
    if min(args.clips, args.repeat, args.seconds, args.threads or 1) < 1:
        parser.error("--clips, --repeat, --seconds and --threads must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a report, and return the numbers."""
    args = parse_args(argv)
    scale: Scale = "quick" if args.quick else "full" if args.full else "default"
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(device=torch.device("cpu"), scale=scale)
    inputs = run_inputs(args.clips, quick=args.quick, seconds=args.seconds)
    repeat = 1 if args.quick else args.repeat
    print(
        f"extractor benchmark on cpu: {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, "
        + (
            "QUICK: tiny models, no warm-up (numbers mean nothing)"
            if args.quick
            else f"warm-up then best of {repeat}"
        )
    )
    print(f"process resident memory before building models: {rss_bytes() / MIB:.0f} MiB")
    results: dict[str, Any] = {}
    for name in args.only:
        weights, model_mib, rows = run_extractor(
            name, inputs, settings, repeat=repeat, warmup=not args.quick
        )
        print(f"== {name}: weights {weights}; model {model_mib:.0f} MiB")
        for row in rows:
            print_result(row, "resident memory")
            results[row["label"]] = row | {"weights": weights, "model_mib": model_mib}
    return results


if __name__ == "__main__":
    main()
