"""Training data: (clip, caption) pairs packed into webdataset tar shards, and streamed back.

``write_shards`` packs each clip's mp4 bytes as they are (frames and soundtrack together, already
compressed) with a JSON record ``{"id", "caption"}`` under a running key, ``shard-000000.tar``...,
plus ``index.json`` listing the shards. :class:`ShardBatches` streams them for training: every
epoch the shard list is permuted from ``(seed, epoch)``, ranks take every ``world``-th shard,
data-loader workers every ``W``-th of those, a seeded shuffle buffer mixes samples, and each
sample is decoded to ``num_frames`` frames at ``fps`` (resized on the shorter side and centre
cropped) and a mono soundtrack of ``num_frames / fps`` seconds.

The stream is a pure function of ``(seed, rank, world, workers, batches consumed)``: a resumed run
skips the consumed samples without decoding them and continues with exactly the batch an
uninterrupted run would have seen next.
"""

from __future__ import annotations

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
from torch.utils.data import IterableDataset, get_worker_info

from tavgbench.baselines.tavdiffusion.config import TAVDiffusionConfig
from tavgbench.data.splits import load_manifest, parse_release_captions
from tavgbench.errors import TavgbenchError
from tavgbench.extractors.video import center_crop, resize_bicubic_antialias
from tavgbench.media import decode_audio, decode_frames

INDEX = "index.json"


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


def write_shards(
    clips_dir: str | Path,
    captions: str | Path,
    out_dir: str | Path,
    *,
    shard_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Pack ``clips_dir/<id>.mp4`` with their captions into tar shards of ``shard_size`` clips.

    Clips listed in ``captions`` but absent from ``clips_dir`` are left out and counted in
    ``index.json`` (``missing``).

    Returns:
        The shard paths, in order.
    """
    clips, out = Path(clips_dir), Path(out_dir)
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
            writer.write(
                {
                    "__key__": f"{n:09d}",
                    "mp4": (clips / f"{clip_id}.mp4").read_bytes(),
                    "json": json.dumps({"id": clip_id, "caption": caption}).encode(),
                }
            )
            if progress is not None:
                progress(n + 1, len(present))
    shards = sorted(out.glob("shard-*.tar"))
    index = {
        "shards": [p.name for p in shards],
        "count": len(present),
        "missing": len(pairs) - len(present),
        "shard_size": shard_size,
    }
    (out / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return shards


def list_shards(data: str | Path) -> list[Path]:
    """Shards of a folder written by :func:`write_shards` (or ``*.tar`` in it)."""
    data = Path(data)
    if (data / INDEX).is_file():
        names = json.loads((data / INDEX).read_text())["shards"]
        shards = [data / n for n in names]
    else:
        shards = sorted(data.glob("*.tar"))
    if not shards:
        raise ShardError(f"{data}: no shards; make them with `tavgbench data shard`")
    return shards


def decode_clip(data: bytes, config: TAVDiffusionConfig) -> tuple[np.ndarray, np.ndarray]:
    """mp4 bytes to ``uint8 [f, H, W, 3]`` frames and a ``float32 [samples]`` soundtrack."""
    fd, name = tempfile.mkstemp(suffix=".mp4")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        frames = decode_frames(name, fps=config.fps)[: config.num_frames]
        waveform, _ = decode_audio(name, sample_rate=config.sample_rate)
    finally:
        os.unlink(name)
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
    """

    def __init__(
        self,
        shards: list[Path],
        config: TAVDiffusionConfig,
        *,
        rank: int = 0,
        world: int = 1,
        start_batch: int = 0,
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
            decoded = [decode_clip(s["mp4"], self.config) for s in raw]
            meta = [json.loads(s["json"]) for s in raw]
            yield {
                "frames": torch.from_numpy(np.stack([d[0] for d in decoded])),
                "waveform": torch.from_numpy(np.stack([d[1] for d in decoded])),
                "caption": [m["caption"] for m in meta],
                "id": [m["id"] for m in meta],
            }

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
                buffer.append({"mp4": sample["mp4"], "json": sample["json"]})
                if len(buffer) >= self.config.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
            epoch += 1


def _everything(urls: Any) -> Any:
    # Shards are already split by rank and worker above.
    return urls
