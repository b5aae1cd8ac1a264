"""Decode throughput and memory: tavgbench.media against decord.

The work per clip is what scoring needs: 16 evenly spaced RGB frames and the soundtrack as
16 kHz mono (``decode_frames(path, num_frames=16)`` + ``decode_audio(path, sample_rate=16000)``).
It runs on the demo split (small 2-4 s clips) and on a generated 10 s 320x256 24 fps H.264/AAC
clip with a 44.1 kHz soundtrack. When decord is importable, the same work is done with
``VideoReader.get_batch`` (the same 16 frame indices) and ``AudioReader`` (16 kHz mono), and the
speed ratio ours/decord is printed (target: >= 1). Memory: peak resident memory while decoding
N clips in a loop and then 4N clips, results discarded (target: flat in the number of clips).

Run from the repository root::

    python -m benchmarks.decode                  # 24 demo clips per set, best of 5
    python -m benchmarks.decode --clips 2 --quick
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from itertools import cycle, islice
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from tavgbench.media import decode_audio, decode_frames, write_audible_video

NUM_FRAMES = 16
SAMPLE_RATE = 16000
LONG_SIZE = (256, 320)  # height, width
LONG_FPS = 24
LONG_SAMPLE_RATE = 44100
DECORD_HINT = "decord not installed: pip install decord==0.6.0"
MIB = 1024 * 1024

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Measurement helpers (also used by benchmarks.extractors and benchmarks.gpu_extractors)


def rss_bytes() -> int:
    """Resident memory of this process now; on systems without /proc, the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # ru_maxrss is in bytes on macOS and in KiB elsewhere.
        return peak if sys.platform == "darwin" else peak * 1024


class PeakRSS:
    """Peak resident memory of this process while a block runs.

    ``ru_maxrss`` only ever grows over the life of a process, so it cannot tell two phases of
    one run apart; a thread samples the current resident size every ``interval`` seconds
    instead. Allocations that live shorter than the interval can be missed.

    Attributes:
        start: resident bytes when the block began.
        peak: largest resident bytes seen while it ran.
        end: resident bytes when it ended.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start = self.peak = self.end = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.end = rss_bytes()
        self.peak = max(self.peak, self.end)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Wall-clock seconds of one call, and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def ratio_line(label: str, value: float, target: str) -> str:
    """One aligned line of a ratio and its target."""
    return f"  {label:<44} {value:6.2f}   (target {target})"


# ---------------------------------------------------------------------------------------------
# Inputs


def write_long_clip(path: Path, seconds: float) -> Path:
    """A 320x256 24 fps H.264 clip with a 440 Hz sine at 44.1 kHz (AAC).

    The picture is a scrolling colour gradient with a moving square: smooth enough to encode
    like real footage, moving so every frame differs.
    """
    height, width = LONG_SIZE
    n_frames = round(seconds * LONG_FPS)
    rows, cols = np.mgrid[0:height, 0:width]
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for i in range(n_frames):
        frames[i, ..., 0] = (cols + 3 * i) % 256
        frames[i, ..., 1] = (rows + 2 * i) % 256
        frames[i, ..., 2] = ((rows + cols) // 2 + i) % 256
        top, left = (4 * i) % (height - 48), (5 * i) % (width - 48)
        frames[i, top : top + 48, left : left + 48] = 255
    t = np.arange(round(seconds * LONG_SAMPLE_RATE)) / LONG_SAMPLE_RATE
    waveform = (0.4 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    return write_audible_video(path, frames, LONG_FPS, waveform, LONG_SAMPLE_RATE)


def write_demo_clips(folder: Path, n_clips: int) -> list[Path]:
    """Every clip of the demo split (reference and both submissions), ``3 * n_clips`` files."""
    from tavgbench.data.demo import write_demo

    layout = write_demo(folder, n_clips=n_clips, seed=0)
    return [d / f"{clip_id}.mp4" for d in layout.clip_dirs().values() for clip_id in layout.ids]


# ---------------------------------------------------------------------------------------------
# The two decoders, doing the same work: frames and audio separately, so the report can say
# which part costs what


def ours_frames(path: Path) -> np.ndarray:
    """16 evenly spaced RGB frames with tavgbench.media (PyAV)."""
    return decode_frames(path, num_frames=NUM_FRAMES)


def ours_audio(path: Path) -> np.ndarray:
    """16 kHz mono with tavgbench.media (PyAV decode, torchaudio-equivalent resampler)."""
    return decode_audio(path, sample_rate=SAMPLE_RATE)[0]


def decord_frames(path: Path) -> np.ndarray:
    """The same frames with decord: the centres of 16 equal segments, as ours takes them."""
    from decord import VideoReader, cpu

    reader = VideoReader(str(path), ctx=cpu(0))
    count = len(reader)
    indices = ((np.arange(NUM_FRAMES) + 0.5) * count / NUM_FRAMES).astype(np.int64)
    return reader.get_batch(indices.tolist()).asnumpy()


def decord_audio(path: Path) -> np.ndarray:
    """16 kHz mono with decord's AudioReader (FFmpeg's resampler)."""
    from decord import AudioReader, cpu

    return AudioReader(str(path), ctx=cpu(0), sample_rate=SAMPLE_RATE, mono=True)[:].asnumpy()[0]


PARTS: dict[str, tuple[Callable[[Path], np.ndarray], Callable[[Path], np.ndarray]]] = {
    "ours": (ours_frames, ours_audio),
    "decord": (decord_frames, decord_audio),
}


def decode_clip(backend: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames and audio of one clip with ``backend`` (``"ours"`` or ``"decord"``)."""
    frames, audio = PARTS[backend]
    return frames(path), audio(path)


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


def _decode_all(decode: Callable[[Path], object], paths: Sequence[Path]) -> None:
    for path in paths:
        decode(path)


def _throughput(
    decoders: dict[str, Callable[[Path], object]], paths: Sequence[Path], repeat: int
) -> dict[str, float]:
    """Clips per second of each decoder, best of ``repeat`` (runs interleaved, so load from
    other processes on a shared machine hits both alike)."""
    for decode in decoders.values():
        # The first call pays for imports and the resampler's kernel, which scoring pays once.
        decode(paths[0])
    best = dict.fromkeys(decoders, float("inf"))
    for _ in range(repeat):
        for name, decode in decoders.items():
            seconds, _ = timed(lambda decode=decode: _decode_all(decode, paths))
            best[name] = min(best[name], seconds)
    return {name: len(paths) / seconds for name, seconds in best.items()}


def _memory(decode: Callable[[Path], object], paths: Sequence[Path], n: int) -> dict[str, float]:
    """Peak and final resident MiB while decoding ``n`` clips, then ``4 n`` clips."""
    found: dict[str, float] = {}
    for count in (n, 4 * n):
        with PeakRSS() as rss:
            for path in islice(cycle(paths), count):
                decode(path)
        found[f"peak_mib_{count}"] = rss.peak / MIB
        found[f"end_mib_{count}"] = rss.end / MIB
    found["peak_growth_mib"] = found[f"peak_mib_{4 * n}"] - found[f"peak_mib_{n}"]
    return found


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.decode",
        description="Decode throughput and memory of tavgbench.media, against decord.",
    )
    parser.add_argument(
        "--clips",
        type=int,
        default=24,
        help="demo clips per set (3 sets are decoded); also N "
        "of the memory check (N then 4N decodes). Default: 24.",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="timing repeats, best kept. Default: 5."
    )
    parser.add_argument(
        "--quick", action="store_true", help="a 2 s long clip and one repeat (smoke test)."
    )
    args = parser.parse_args(argv)
    if args.clips < 2:
        parser.error("--clips must be at least 2 (the demo split needs two clips)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def _report_speed(
    title: str, decoders: dict[str, Callable[[Path], object]], paths: Sequence[Path], repeat: int
) -> dict[str, float]:
    speed = _throughput(decoders, paths, repeat)
    print(title)
    for name, value in speed.items():
        print(f"  {name:<8} {value:9.2f} clips/s")
    entry = {f"{name}_clips_per_s": value for name, value in speed.items()}
    if "decord" in speed:
        entry["ratio"] = speed["ours"] / speed["decord"]
        print(ratio_line("speed ours/decord", entry["ratio"], ">= 1"))
    return entry


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a report, and return the numbers."""
    args = parse_args(argv)
    repeat = 1 if args.quick else args.repeat
    long_seconds = 2.0 if args.quick else 10.0
    has_decord = decord_available()
    backends = ["ours", "decord"] if has_decord else ["ours"]
    whole = {name: partial(decode_clip, name) for name in backends}

    import torch

    print(f"decode benchmark: {NUM_FRAMES} evenly spaced frames + {SAMPLE_RATE} Hz mono per clip")
    print(
        f"  cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, best of {repeat}"
    )
    if not has_decord:
        print(f"  {DECORD_HINT}")
    results: dict[str, Any] = {"decord": has_decord}
    with tempfile.TemporaryDirectory(prefix="tavgbench-decode-") as tmp:
        folder = Path(tmp)
        demo = write_demo_clips(folder / "demo", args.clips)
        long_clip = write_long_clip(folder / "long.mp4", long_seconds)

        title = f"demo split ({len(demo)} clips, 2-4 s, 160x128 16 fps, 16 kHz AAC)"
        results["demo"] = _report_speed(title, whole, demo, repeat)
        title = f"long clip ({long_seconds:g} s, 320x256 24 fps, 44.1 kHz AAC)"
        results["long"] = _report_speed(title, whole, [long_clip], repeat)
        for part, index in (("frames", 0), ("audio", 1)):
            only = {name: PARTS[name][index] for name in backends}
            title = f"long clip, {part} only"
            results[f"long_{part}"] = _report_speed(title, only, [long_clip], repeat)

        if has_decord:
            ours = decode_clip("ours", long_clip)
            theirs = decode_clip("decord", long_clip)
            diff = float(np.abs(ours[0].astype(np.int16) - theirs[0]).mean())
            results["frames_mean_abs_diff"] = diff
            print(
                f"same frames as decord on the long clip: mean |difference| {diff:.3f} "
                f"(0-255); audio samples: ours {len(ours[1])}, decord {len(theirs[1])}"
            )

        paths = [*demo, long_clip]
        n = args.clips
        print(
            f"memory: peak resident MiB decoding N={n} and 4N={4 * n} clips in a loop "
            "(all files in turn, results discarded)"
        )
        memory = {name: _memory(decode, paths, n) for name, decode in whole.items()}
        for name, found in memory.items():
            print(
                f"  {name:<8} N: {found[f'peak_mib_{n}']:7.1f}   4N: "
                f"{found[f'peak_mib_{4 * n}']:7.1f}   growth {found['peak_growth_mib']:+6.1f} "
                "MiB (target ~0)"
            )
        results["memory"] = memory
    return results


if __name__ == "__main__":
    main()
