"""Feature extraction through the cache: decode each clip once, run every extractor, store.

Decoding runs in DataLoader worker processes so it overlaps the networks. Every clip's features
are written to the :class:`~tavgbench.harness.cache.FeatureCache` as soon as they exist, keyed by
the clip's content hash and the extractor's description (name, version, protocol, weights
sha256), so a killed run loses nothing and a rerun only computes what is missing. Under
``torch.distributed`` each rank takes every ``world_size``-th clip; all ranks share the cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tavgbench.errors import MediaError, TavgbenchError
from tavgbench.extractors.base import Extractor
from tavgbench.harness.cache import FeatureCache, combined_hash
from tavgbench.media.io import decode_audio, decode_frames

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipSource:
    """One clip to score: its files and the content hash that keys its cached features."""

    id: str
    video: str
    audio: str
    hash: str


def clip_sources(clips: Sequence[tuple[str, str, str]]) -> list[ClipSource]:
    """Hash ``(id, video path, audio path)`` triples; the audio may be the video file itself."""
    sources = []
    for clip_id, video, audio in clips:
        paths = [Path(video)] if audio in ("", video) else [Path(video), Path(audio)]
        sources.append(ClipSource(clip_id, video, audio or video, combined_hash(paths)))
    return sources


@dataclass(frozen=True)
class DecodeSpec:
    """What an extractor needs decoded from a clip."""

    num_frames: int | None = None
    fps: float | None = None
    all_frames: bool = False
    #: "" for no audio, else how channels become mono: "mean" or "first".
    audio: str = ""

    @property
    def frames_key(self) -> str | None:
        if self.num_frames is not None:
            return f"n{self.num_frames}"
        if self.fps is not None:
            return f"fps{self.fps:g}"
        return "all" if self.all_frames else None


def decode_spec(extractor: Extractor) -> DecodeSpec:
    """The decode an extractor needs, read off its protocol."""
    protocol = extractor.protocol
    if extractor.name in ("i3d", "clip"):
        return DecodeSpec(num_frames=int(protocol.get("num_frames", 16)))
    if extractor.name == "vggish":
        return DecodeSpec(audio="mean")
    if extractor.name == "imagebind":
        # ImageBind's fbank reads the first channel of a multichannel file.
        fps = protocol.get("video_fps")
        if fps:
            return DecodeSpec(fps=float(fps), audio="first")
        return DecodeSpec(all_frames=True, audio="first")
    raise TavgbenchError(f"no decode plan for extractor {extractor.name!r}")


def compute_clip_features(
    extractor: Extractor, items: Sequence[Mapping[str, Any]], spec: DecodeSpec
) -> list[dict[str, np.ndarray]]:
    """Run one extractor on decoded clips; one dict of named outputs per clip."""
    frames = [item["frames"][spec.frames_key] for item in items] if spec.frames_key else []
    name = extractor.name
    if name == "i3d":
        if len({f.shape for f in frames}) == 1:
            logits = extractor.embed_frames(np.stack(frames))  # type: ignore[attr-defined]
        else:
            logits = np.concatenate([extractor.embed_frames(f[None]) for f in frames])  # type: ignore[attr-defined]
        return [{"logits": row} for row in logits]
    if name == "clip":
        return [{"frames": e} for e in extractor.embed_frames(frames)]  # type: ignore[attr-defined]
    if name == "vggish":
        return [
            {"examples": extractor.embed_audio_examples([audio], rate)[0]}  # type: ignore[attr-defined]
            for audio, rate in (i["audio"][spec.audio] for i in items)
        ]
    if name == "imagebind":
        visual = extractor.embed_frames(frames)  # type: ignore[attr-defined]
        outputs = []
        for item, frame_embeddings in zip(items, visual, strict=True):
            waveform, rate = item["audio"][spec.audio]
            audio = extractor.embed_audio([waveform], rate)[0]  # type: ignore[attr-defined]
            outputs.append({"frames": frame_embeddings, "audio": audio})
        return outputs
    raise TavgbenchError(f"no feature plan for extractor {name!r}")


class _DecodeDataset(Dataset):
    """Decodes each clip once for every spec that some extractor needs."""

    def __init__(self, clips: Sequence[ClipSource], specs: Sequence[DecodeSpec]) -> None:
        self.clips = list(clips)
        self.frame_specs = {s.frames_key: s for s in specs if s.frames_key}
        self.audio_modes = sorted({s.audio for s in specs if s.audio})

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip = self.clips[index]
        item: dict[str, Any] = {"index": index, "id": clip.id, "frames": {}, "audio": {}}
        item["error"] = ""
        try:
            for key, spec in self.frame_specs.items():
                if spec.all_frames:
                    item["frames"][key] = decode_frames(clip.video)
                else:
                    item["frames"][key] = decode_frames(
                        clip.video, num_frames=spec.num_frames, fps=spec.fps
                    )
            for mode in self.audio_modes:
                item["audio"][mode] = decode_audio(clip.audio, channels=mode)
        except MediaError as exc:
            item["error"] = str(exc)
        return item


def _list_collate(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


@dataclass
class ExtractionReport:
    """Which clips were computed, which came from the cache, which failed and why."""

    computed: int = 0
    cached: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def extract_to_cache(
    clips: Sequence[ClipSource],
    extractors: Sequence[Extractor],
    cache: FeatureCache,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    on_progress: Callable[[int], None] | None = None,
) -> ExtractionReport:
    """Compute and cache the features of every clip not yet cached for every extractor.

    Clips are cut into fixed batches of ``batch_size`` in the order given, and a batch is
    always computed whole: a network's output for a clip can depend (in the last float bits) on
    which clips share its batch, so fixed batches make a resumed run, or a run on any number of
    ranks, produce bit-identical features.

    Args:
        clips: the clips to extract, in a fixed order.
        extractors: the extractors to run.
        cache: the shared feature cache.
        batch_size: clips decoded and sent through the networks together.
        num_workers: DataLoader decode processes (0 decodes in this process).
        rank: this process's rank under torch.distributed (it takes every
            ``world_size``-th batch).
        world_size: number of ranks.
        on_progress: called with the number of clips finished after each batch.

    Returns:
        Counts of computed and cached clips, and the clips that failed to decode with why.
    """
    clips = list(clips)
    failed: dict[str, str] = {}
    report = ExtractionReport(failed=failed)
    if rank == 0:
        # What runs killed mid-write left behind (a resumed run is the usual caller).
        cache.sweep([e.name for e in extractors])
    batches = [
        list(range(i, min(i + batch_size, len(clips)))) for i in range(0, len(clips), batch_size)
    ]
    mine = batches[rank::world_size]
    descriptions = [e.describe() for e in extractors]

    def missing(index: int, description: dict[str, Any]) -> bool:
        # get() rather than `in`: a damaged entry (a write cut short) must count as missing.
        return cache.get(clips[index].hash, description) is None

    todo = [b for b in mine if any(missing(i, d) for i in b for d in descriptions)]
    report.cached = sum(map(len, mine)) - sum(map(len, todo))
    if on_progress and report.cached:
        on_progress(report.cached)
    if not todo:
        return report
    specs = {e.name: decode_spec(e) for e in extractors}
    loader = DataLoader(
        _DecodeDataset(clips, list(specs.values())),
        batch_sampler=todo,
        num_workers=num_workers,
        collate_fn=_list_collate,
    )
    for batch in loader:
        good = [item for item in batch if not item["error"]]
        failed |= {item["id"]: item["error"] for item in batch if item["error"]}
        for extractor, description in zip(extractors, descriptions, strict=True):
            if not good or not any(missing(i["index"], description) for i in good):
                continue
            with torch.inference_mode():
                outputs = compute_clip_features(extractor, good, specs[extractor.name])
            for item, arrays in zip(good, outputs, strict=True):
                cache.put(clips[item["index"]].hash, description, arrays)
        report.computed += len(good)
        if on_progress:
            on_progress(len(batch))
    return report


def load_cached(
    clips: Sequence[ClipSource],
    extractor: Extractor,
    cache: FeatureCache,
    reduce: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Every clip's cached features for one extractor (all must be present), each passed
    through ``reduce`` as it is read when one is given."""
    description = extractor.describe()
    features = {}
    for clip in clips:
        arrays = cache.get(clip.hash, description)
        if arrays is None:
            raise TavgbenchError(
                f"{clip.video}: features of {extractor.name} are missing from the cache "
                f"{cache.root}; rerun the command to compute them"
            )
        features[clip.id] = arrays if reduce is None else reduce(arrays)
    return features


def text_embeddings(
    extractor: Extractor, captions: Mapping[str, str], cache: FeatureCache, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Caption embeddings of a text-capable extractor (CLIP), cached by caption hash.

    As for clips, captions go through the network in fixed batches (in the order given), and a
    batch with any caption missing from the cache is computed whole, so results do not depend
    on what an earlier, interrupted run left in the cache.
    """
    description = extractor.describe() | {"input": "text"}
    items = []
    for clip_id, caption in captions.items():
        if not caption.strip():
            raise TavgbenchError(f"clip {clip_id!r} has an empty caption; CLIPSIM needs captions")
        items.append((clip_id, caption, hashlib.sha256(caption.encode("utf-8")).hexdigest()))
    out: dict[str, np.ndarray] = {}
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        cached = [cache.get(key, description) for _, _, key in chunk]
        if all(c is not None for c in cached):
            out |= {clip_id: c["text"] for (clip_id, _, _), c in zip(chunk, cached, strict=True)}
            continue
        with torch.inference_mode():
            embedded = extractor.embed_text([c for _, c, _ in chunk])  # type: ignore[attr-defined]
        for (clip_id, _, key), row in zip(chunk, embedded, strict=True):
            cache.put(key, description, {"text": np.asarray(row)})
            out[clip_id] = np.asarray(row)
    return out


def load_extractors(
    names: Sequence[str],
    *,
    device: str,
    extractor_options: Mapping[str, Mapping[str, Any]],
    prebuilt: Mapping[str, Extractor] | None = None,
    stage: Callable[[str], None] = lambda _: None,
) -> dict[str, Extractor]:
    """The named extractors: prebuilt ones where given, else real checkpoints from the cache."""
    from tavgbench.extractors import load_extractor

    loaded: dict[str, Extractor] = {}
    for name in names:
        if prebuilt is not None and name in prebuilt:
            loaded[name] = prebuilt[name]
        else:
            stage(f"loading {name}")
            loaded[name] = load_extractor(name, device, **dict(extractor_options.get(name, {})))
    return loaded
