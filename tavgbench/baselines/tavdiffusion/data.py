"""Training data: (clip, caption) pairs packed into webdataset tar shards, and streamed back.

``write_shards`` packs each clip's mp4 bytes as they are (frames and soundtrack together, already
compressed) with a JSON record ``{"id", "caption"}`` under a running key, ``shard-000000.tar``...,
plus ``index.json`` listing the shards. With a model given, each sample also carries its VAE
posteriors (``latents``: safetensors bytes of the video and audio posterior means and standard
deviations, computed from exactly the frames and soundtrack training would decode), so training
skips decoding and both VAE encoders; ``index.json`` records the codecs' fingerprint and the media
settings, and a trainer whose model differs refuses the latents. The posterior is stored, not one
sample of it, so every epoch still draws fresh latents from the step's generator.

:class:`ShardBatches` streams the shards for training: every
epoch the shard list is permuted from ``(seed, epoch)``, ranks take every ``world``-th shard,
data-loader workers every ``W``-th of those, a seeded shuffle buffer mixes samples, and each
sample is decoded to ``num_frames`` frames at ``fps`` (resized on the shorter side and centre
cropped) and a mono soundtrack of ``num_frames / fps`` seconds.

The stream is a pure function of ``(seed, rank, world, workers, batches consumed)``: a resumed run
skips the consumed samples without decoding them and continues with exactly the batch an
uninterrupted run would have seen next.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch.utils.data import IterableDataset, get_worker_info

from tavgbench.baselines.interface import torch_dtype
from tavgbench.baselines.tavdiffusion.config import TAVDiffusionConfig
from tavgbench.baselines.tavdiffusion.model import TAVDiffusion
from tavgbench.data.splits import load_manifest, parse_release_captions
from tavgbench.errors import TavgbenchError
from tavgbench.extractors.video import center_crop, resize_bicubic_antialias
from tavgbench.media import decode_audio, decode_frames

INDEX = "index.json"
LATENT_KEYS = ("video_mean", "video_std", "audio_mean", "audio_std")
FRONT_END = "audioldm-v1: peak 0.5, centred STFT, silence-padded to the latent grid"
# The settings that decide what a clip's latents are.
LATENT_MEDIA = (
    "height",
    "width",
    "num_frames",
    "fps",
    "sample_rate",
    "n_fft",
    "hop_length",
    "n_mels",
    "fmin",
    "fmax",
)


class ShardError(TavgbenchError):
    """Training shards are missing, empty or too few for the ranks and workers."""


def read_captions(path: str | Path) -> list[tuple[str, str]]:
    """``(id, caption)`` from a split manifest (CSV/JSONL) or TAVGBench's release_captions.txt."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        entries = parse_release_captions(path.read_text(encoding="utf-8"), str(path))
    else:
        entries = list(load_manifest(path).entries)
    return [(e.id, e.caption) for e in entries]


def latent_fingerprint(model: TAVDiffusion) -> dict[str, Any]:
    """What precomputed latents depend on: the VAEs' weights, the audio front end, the media."""
    digest = hashlib.sha256()
    for name in ("video_vae", "audio_vae"):
        module = getattr(model.codecs, name)
        for key, value in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    config = model.config
    return {
        # Bumped whenever the audio/video preparation before the VAEs changes.
        "front_end": FRONT_END,
        "codecs_sha256": digest.hexdigest(),
        "video_vae": config.components["video_vae"].source or "random",
        "audio_vae": config.components["audio_vae"].source or "random",
        **{key: getattr(config, key) for key in LATENT_MEDIA},
    }


def clip_latents(
    model: TAVDiffusion, frames: np.ndarray, audio: np.ndarray, dtype: torch.dtype
) -> bytes:
    """One decoded clip's VAE posteriors, as safetensors bytes (:data:`LATENT_KEYS`)."""
    video_mean, video_std = model.video_posterior(torch.from_numpy(frames)[None])
    audio_mean, audio_std = model.audio_posterior(torch.from_numpy(audio)[None])
    tensors = {
        "video_mean": video_mean[0],
        "video_std": video_std[0],
        "audio_mean": audio_mean[0],
        "audio_std": audio_std[0],
    }
    return save_tensors({k: v.to("cpu", dtype).contiguous() for k, v in tensors.items()})


def write_shards(
    clips_dir: str | Path,
    captions: str | Path,
    out_dir: str | Path,
    *,
    shard_size: int = 1000,
    model: TAVDiffusion | None = None,
    latent_dtype: str = "float16",
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Pack ``clips_dir/<id>.mp4`` with their captions into tar shards of ``shard_size`` clips.

    Clips listed in ``captions`` but absent from ``clips_dir`` are left out and counted in
    ``index.json`` (``missing``).

    Args:
        model: when given, also store each clip's VAE posteriors (see the module docstring),
            encoded on ``model.device``.
        latent_dtype: storage type of the latents: ``float16`` (half the size; posterior means
            within 1e-3 relative) or ``float32`` (exactly what on-the-fly encoding gives).

    Returns:
        The shard paths, in order.
    """
    clips, out = Path(clips_dir), Path(out_dir)
    storage = torch_dtype(latent_dtype)  # refuses an unknown name before anything is written
    pairs = read_captions(captions)
    present = [(i, c) for i, c in pairs if (clips / f"{i}.mp4").is_file()]
    if not present:
        raise ShardError(
            f"{clips}: none of the {len(pairs)} clips of {captions} is there as <id>.mp4"
        )
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=shard_size, verbose=0) as writer:
        for n, (clip_id, caption) in enumerate(present):
            data = (clips / f"{clip_id}.mp4").read_bytes()
            sample = {
                "__key__": f"{n:09d}",
                "mp4": data,
                "json": json.dumps({"id": clip_id, "caption": caption}).encode(),
            }
            if model is not None:
                frames, audio = decode_clip(data, model.config, name=clips / f"{clip_id}.mp4")
                sample["latents"] = clip_latents(model, frames, audio, storage)
            writer.write(sample)
            if progress is not None:
                progress(n + 1, len(present))
    shards = sorted(out.glob("shard-*.tar"))
    index: dict[str, Any] = {
        "shards": [p.name for p in shards],
        "count": len(present),
        "missing": len(pairs) - len(present),
        "shard_size": shard_size,
    }
    if model is not None:
        index["latents"] = {**latent_fingerprint(model), "dtype": latent_dtype}
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return shards


def read_index(data: str | Path) -> dict[str, Any]:
    """``index.json`` of a shard folder (empty for a bare folder of ``*.tar``)."""
    path = Path(data) / INDEX
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: unreadable shard index ({exc}); re-run `data shard`") from exc


def check_latents(data: str | Path, model: TAVDiffusion) -> bool:
    """Whether the shards in ``data`` carry latents; refuses latents made for another model."""
    stored = read_index(data).get("latents")
    if stored is None:
        return False
    expected = latent_fingerprint(model)
    changed = [k for k, v in expected.items() if stored.get(k) != v]
    if changed:
        details = ", ".join(f"{k}: {stored.get(k)!r} vs {expected[k]!r}" for k in changed)
        raise ShardError(
            f"{data}: the shards' precomputed latents were made for other codecs or media "
            f"settings ({details}); re-run `tavgbench data shard --latents` with this config, "
            "or shard without --latents"
        )
    return True


def list_shards(data: str | Path) -> list[Path]:
    """Shards of a folder written by :func:`write_shards` (or ``*.tar`` in it)."""
    data = Path(data)
    if (data / INDEX).is_file():
        shards = [data / n for n in read_index(data).get("shards", [])]
    else:
        shards = sorted(data.glob("*.tar"))
    if not shards:
        raise ShardError(f"{data}: no shards; make them with `tavgbench data shard`")
    return shards


def decode_clip(
    data: bytes, config: TAVDiffusionConfig, name: str | Path = "clip"
) -> tuple[np.ndarray, np.ndarray]:
    """mp4 bytes to ``uint8 [f, H, W, 3]`` frames and a ``float32 [samples]`` soundtrack.

    ``name`` (the clip's file or shard entry) names the clip in errors.
    """
    fd, tmp = tempfile.mkstemp(suffix=".mp4")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            frames = decode_frames(tmp, fps=config.fps)[: config.num_frames]
            waveform, _ = decode_audio(tmp, sample_rate=config.sample_rate)
        except TavgbenchError as exc:
            raise ShardError(f"{name}: {exc}") from exc
    finally:
        os.unlink(tmp)
    if len(frames) < config.num_frames:
        # Short clips hold their last frame, as a player would.
        pad = np.repeat(frames[-1:], config.num_frames - len(frames), axis=0)
        frames = np.concatenate([frames, pad])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    # Scale so the frame covers the target box, then centre crop (no letterboxing).
    h, w = x.shape[-2:]
    scale = max(config.height / h, config.width / w)
    size = (max(config.height, math.ceil(h * scale)), max(config.width, math.ceil(w * scale)))
    x = center_crop(resize_bicubic_antialias(x, size), (config.height, config.width))
    frames = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    audio = np.zeros(config.num_samples, np.float32)
    audio[: min(len(waveform), config.num_samples)] = waveform[: config.num_samples]
    return frames, audio


class ShardBatches(IterableDataset):
    """An endless, resumable stream of training batches for one rank.

    Use with ``DataLoader(batch_size=None, num_workers=config.num_workers)``.

    Args:
        shards: tar shards (:func:`list_shards`).
        config: media sizes, batch size, shuffle buffer, seed, worker count.
        rank: this process's rank; ``world``: the number of processes.
        start_batch: batches this rank has already consumed (resume).
        latents: yield the shards' stored VAE posteriors (``video_mean``, ``video_std``,
            ``audio_mean``, ``audio_std``, float32) instead of decoded frames and soundtracks
            (check them first with :func:`check_latents`).
    """

    def __init__(
        self,
        shards: list[Path],
        config: TAVDiffusionConfig,
        *,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
        latents: bool = False,
    ) -> None:
        workers = max(1, config.num_workers)
        if len(shards) < world * workers:
            raise ShardError(
                f"{len(shards)} shards cannot feed {world} ranks x {workers} workers; "
                "write smaller shards (`tavgbench data shard --shard-size`) or use fewer workers"
            )
        self.shards = [str(p) for p in shards]
        self.config = config
        self.rank, self.world = rank, world
        self.start_batch = start_batch
        self.latents = latents

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers = info.num_workers if info is not None else 1
        worker = info.id if info is not None else 0
        # The DataLoader takes batch i from worker i % workers; rotating the workers' roles by
        # the batches consumed makes a resumed loader continue the same round-robin.
        role = (worker + self.start_batch) % workers
        done = self.start_batch // workers + int(role < self.start_batch % workers)
        samples = self._samples(role, workers)
        batch_size = self.config.batch_size
        for _ in range(done * batch_size):
            next(samples)
        while True:
            raw = [next(samples) for _ in range(batch_size)]
            meta = [json.loads(s["json"]) for s in raw]
            batch: dict[str, Any] = {
                "caption": [m["caption"] for m in meta],
                "id": [m["id"] for m in meta],
            }
            if self.latents:
                stored = [self._latents(s, m["id"]) for s, m in zip(raw, meta, strict=True)]
                for key in LATENT_KEYS:
                    batch[key] = torch.stack([t[key] for t in stored]).float()
            else:
                decoded = [
                    decode_clip(s["mp4"], self.config, m["id"])
                    for s, m in zip(raw, meta, strict=True)
                ]
                batch["frames"] = torch.from_numpy(np.stack([d[0] for d in decoded]))
                batch["waveform"] = torch.from_numpy(np.stack([d[1] for d in decoded]))
            yield batch

    @staticmethod
    def _latents(sample: dict[str, bytes], clip_id: str) -> dict[str, torch.Tensor]:
        if "latents" not in sample:
            raise ShardError(
                f"clip {clip_id}: its shard has no latents although index.json says so; "
                "re-run `tavgbench data shard --latents`"
            )
        return load_tensors(sample["latents"])

    def _samples(self, role: int, workers: int) -> Iterator[dict[str, bytes]]:
        """This rank's and worker role's raw samples, shuffled, over endless epochs."""
        seed = self.config.seed
        rng = np.random.default_rng([seed, self.rank, role, 1])
        buffer: list[dict[str, bytes]] = []
        epoch = 0
        while True:
            order = np.random.default_rng([seed, epoch]).permutation(len(self.shards))
            mine = [self.shards[i] for i in order[self.rank :: self.world][role::workers]]
            stream = wds.WebDataset(
                mine,
                shardshuffle=False,
                nodesplitter=_everything,
                workersplitter=_everything,
                empty_check=False,
            )
            for sample in stream:
                keys = ("json", "latents") if self.latents else ("json", "mp4")
                buffer.append({k: sample[k] for k in keys if k in sample})
                if len(buffer) >= self.config.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            epoch += 1


def _everything(urls: Any) -> Any:
    # Shards are already split by rank and worker above.
    return urls
