"""End-to-end scoring: clips/s by stage, and peak memory against the number of clips.

Scores the faithful submission of the procedural demo split (:func:`tavgbench.data.demo.write_demo`)
against its reference with every metric, through :func:`tavgbench.harness.score.score_submission`
and a fresh feature cache, and prints:

* clips/s end to end (validation and content hashing, extraction of the submission and the
  reference, metrics), and the same run again on the warm cache;
* where the time goes: decoding (``decode_frames``/``decode_audio`` calls), each extractor's
  ``embed_*`` calls, caption embedding, statistics with cache reads (the ``metrics`` stage less
  caption embedding), and cache writes with the rest of the extraction loop (the remainder);
* peak resident memory of a whole scoring process (a fresh one per size, ``ru_maxrss``) for
  64 and 512 clips, and the ratio of the two (target: <= 1.2, memory flat in the number of
  clips: frames are decoded per batch, only features stay in memory).

Extractors: the real checkpoint where the tavgbench weights cache (``TAVGBENCH_HOME``) holds
it; otherwise random weights: I3D and VGGish at full size (the speed of a network does not
depend on its weights), CLIP and ImageBind reduced to the tiny configurations of
:mod:`benchmarks.extractors` (their full sizes take minutes per clip on a laptop CPU). The
report says which ran. ``--quick`` uses the tiny models and I3D at 193 px throughout.

Run from the repository root::

    python -m benchmarks.score                          # 24 clips; memory at 64 and 512 clips
    python -m benchmarks.score --clips 8 --memory-clips 16 128
    python -m benchmarks.score --quick                  # smoke test: 2 clips; memory at 2, 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.decode import MIB, ratio_line, rss_bytes

METRICS = ("fvd", "kvd", "clipsim", "fad", "avhscore")
REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# Extractors


def build_extractors(device: str, *, quick: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """The four extractors, and for each which weights it runs.

    Real checkpoints from the weights cache where present (not with ``quick``); random weights
    otherwise, seeded so that every process builds the same networks.
    """
    import torch
    from transformers import CLIPModel

    from benchmarks.extractors import clip_config, imagebind_config, placeholder_tokenizer
    from tavgbench import weights as registry
    from tavgbench.extractors import EXTRACTORS, load_extractor
    from tavgbench.extractors.clip import CLIPExtractor
    from tavgbench.extractors.i3d import I3D, I3DExtractor
    from tavgbench.extractors.imagebind import ImageBindEncoders, ImageBindExtractor
    from tavgbench.extractors.vggish import VGGish, VGGishExtractor

    def cached(name: str) -> bool:
        return not quick and registry.status(EXTRACTORS[name][1])["state"] == "ready"

    extractors: dict[str, Any] = {}
    described: dict[str, str] = {}
    torch.manual_seed(0)
    if cached("i3d"):
        extractors["i3d"] = load_extractor("i3d", device)
        described["i3d"] = "real weights"
    else:
        size = 193 if quick else 224
        extractors["i3d"] = I3DExtractor(I3D(), device=device, size=size)
        described["i3d"] = f"random weights, full size, {size} px"
    if cached("clip"):
        extractors["clip"] = load_extractor("clip", device)
        described["clip"] = "real weights"
    else:
        model = CLIPModel(clip_config("quick"))
        extractors["clip"] = CLIPExtractor(model, placeholder_tokenizer(), device=device)
        described["clip"] = "random weights, tiny (2 layers of 64)"
    if cached("vggish"):
        extractors["vggish"] = load_extractor("vggish", device)
        described["vggish"] = "real weights"
    else:
        extractors["vggish"] = VGGishExtractor(VGGish(), device=device)
        described["vggish"] = "random weights, full size"
    if cached("imagebind"):
        extractors["imagebind"] = load_extractor("imagebind", device)
        described["imagebind"] = "real weights (huge)"
    else:
        model = ImageBindEncoders.from_config(imagebind_config("quick"))
        extractors["imagebind"] = ImageBindExtractor(model, device=device)
        described["imagebind"] = "random weights, tiny (1 block of 32 per tower)"
    return extractors, described


# ---------------------------------------------------------------------------------------------
# Timing by stage


class StageClock:
    """Seconds spent in decoding and in each extractor's ``embed_*`` calls while active.

    Decoding is timed by wrapping the two decode functions the extraction loop calls (in this
    process: use no decode workers); extractors by wrapping their public ``embed_*`` methods on
    the instances, with caption embedding (``embed_text``) counted apart.
    """

    def __init__(self, extractors: Mapping[str, Any]) -> None:
        self.extractors = extractors
        self.seconds: dict[str, float] = defaultdict(float)

    def _timed(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start

        return timed

    @contextlib.contextmanager
    def running(self) -> Iterator[StageClock]:
        from tavgbench.harness import extract

        wrapped: list[tuple[Any, str]] = []
        try:
            for name, extractor in self.extractors.items():
                for method in [m for m in dir(extractor) if m.startswith("embed_")]:
                    label = f"{name} (captions)" if method == "embed_text" else name
                    setattr(extractor, method, self._timed(label, getattr(extractor, method)))
                    wrapped.append((extractor, method))
            with (
                mock.patch.object(
                    extract, "decode_frames", self._timed("decode", extract.decode_frames)
                ),
                mock.patch.object(
                    extract, "decode_audio", self._timed("decode", extract.decode_audio)
                ),
            ):
                yield self
        finally:
            # Deleting the instance attribute uncovers the class's method again.
            for extractor, method in wrapped:
                delattr(extractor, method)


def score_demo(
    demo: Path,
    cache: Path,
    extractors: Mapping[str, Any],
    *,
    metrics: Sequence[str],
    device: str,
    batch_size: int,
) -> dict[str, Any]:
    """The results document of the demo's faithful submission (nothing written)."""
    from tavgbench.data.splits import load_manifest
    from tavgbench.harness.score import ScoreOptions, score_submission

    options = ScoreOptions(
        metrics=metrics, device=device, cache_dir=cache, batch_size=batch_size, num_workers=0
    )
    split = load_manifest(demo / "split.csv", name="demo")
    return score_submission(
        demo / "submissions" / "faithful", split, demo / "reference", options,
        extractors=extractors,
    )  # fmt: skip


def stage_breakdown(runtime: Mapping[str, float], clock: Mapping[str, float]) -> dict[str, float]:
    """Seconds per stage from ``runtime.seconds`` of the results and the stage clock."""
    networks = {k: v for k, v in clock.items() if k != "decode" and "captions" not in k}
    captions = sum(v for k, v in clock.items() if "captions" in k)
    stages = {"validate + hashing": runtime["validate"], "load": runtime["load"]}
    stages["decode"] = clock.get("decode", 0.0)
    stages |= dict(sorted(networks.items()))
    stages["cache writes + other"] = runtime["extract"] - stages["decode"] - sum(networks.values())
    stages["caption embedding"] = captions
    stages["statistics + cache reads"] = runtime["metrics"] - captions
    return stages


def measure_throughput(
    demo: Path, cache: Path, args: argparse.Namespace, n_clips: int
) -> dict[str, Any]:
    """One scoring of the demo on an empty cache (timed by stage), then one on the filled
    cache."""
    extractors, described = build_extractors(args.device, quick=args.quick)
    clock = StageClock(extractors)
    with clock.running():
        start = time.perf_counter()
        cold = score_demo(demo, cache, extractors, metrics=args.metrics,
                          device=args.device, batch_size=args.batch_size)  # fmt: skip
        cold_seconds = time.perf_counter() - start
    start = time.perf_counter()
    warm = score_demo(demo, cache, extractors, metrics=args.metrics,
                      device=args.device, batch_size=args.batch_size)  # fmt: skip
    warm_seconds = time.perf_counter() - start
    processed = n_clips + (cold["reference"] or {}).get("scored", 0)
    return {
        "clips": n_clips,
        "clips_processed": processed,
        "extractors": described,
        "cold_seconds": cold_seconds,
        "clips_per_s": n_clips / cold_seconds,
        "processed_clips_per_s": processed / cold_seconds,
        "warm_seconds": warm_seconds,
        "warm_clips_per_s": n_clips / warm_seconds,
        "warm_runtime": warm["runtime"]["seconds"],
        "warm_equals_cold": all(
            warm["metrics"][m]["value"] == cold["metrics"][m]["value"] for m in args.metrics
        ),
        "stages": stage_breakdown(cold["runtime"]["seconds"], clock.seconds),
    }


# ---------------------------------------------------------------------------------------------
# Memory: one fresh process per size


def peak_rss_bytes() -> int:
    """Largest resident size of this process so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in bytes on macOS and in KiB elsewhere.
    return peak if sys.platform == "darwin" else peak * 1024


def memory_child(args: argparse.Namespace) -> dict[str, Any]:
    """Score ``args.demo`` in this (fresh) process and report its memory."""
    extractors, _ = build_extractors(args.device, quick=args.quick)
    built = rss_bytes()
    with tempfile.TemporaryDirectory(prefix="tavgbench-score-cache-") as cache:
        start = time.perf_counter()
        document = score_demo(args.demo, Path(cache), extractors, metrics=args.metrics,
                              device=args.device, batch_size=args.batch_size)  # fmt: skip
        seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    return {
        "clips": document["submission"]["scored"],
        "seconds": seconds,
        "rss_after_build_mib": built / MIB,
        "peak_mib": peak / MIB,
        "peak_over_build_mib": (peak - built) / MIB,
    }


def measure_memory(n_clips: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from tavgbench.data.demo import write_demo

    demo = work / f"demo-{n_clips}"
    write_demo(demo, n_clips=n_clips, seed=0)
    command = [sys.executable, "-m", "benchmarks.score", "--child-demo", str(demo)]
    command += ["--device", args.device, "--batch-size", str(args.batch_size)]
    command += ["--metrics", ",".join(args.metrics)] + (["--quick"] if args.quick else [])
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory run for {n_clips} clips failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.score",
        description="End-to-end scoring throughput by stage and peak memory vs clip count.",
    )
    parser.add_argument("--clips", type=int, help="demo clips for throughput (default 24)")
    parser.add_argument(
        "--memory-clips", type=int, nargs="*", help="clip counts for memory (default 64 512)"
    )
    parser.add_argument("--metrics", default=",".join(METRICS), help="comma-separated metrics")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--batch-size", type=int, help="clips per network batch (default 8)")
    parser.add_argument(
        "--workdir", type=Path, help="keep the generated demo sets here (reused when complete)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny models, 2 clips, memory at 2 and 4, batch 1"
    )
    parser.add_argument("--child-demo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    # Memory is only flat once the clip counts exceed the batch size (a batch of decoded
    # frames and its activations is the working set), so quick sizes come with batches of 1.
    if args.batch_size is None:
        args.batch_size = 1 if args.quick else 8
    if args.clips is None:
        args.clips = 2 if args.quick else 24
    if args.memory_clips is None:
        args.memory_clips = [2, 4] if args.quick else [64, 512]
    if args.clips < 2 or any(n < 2 for n in args.memory_clips):
        parser.error("the demo needs at least 2 clips per set")
    return args


def _print_report(throughput: Mapping[str, Any], memory: Mapping[int, Mapping[str, Any]]) -> None:
    n, processed = throughput["clips"], throughput["clips_processed"]
    print(f"scoring {n} demo clips (+ {processed - n} reference clips), fresh feature cache")
    for name, weights in throughput["extractors"].items():
        print(f"  {name:<10} {weights}")
    print(
        f"  end to end: {throughput['cold_seconds']:.1f} s = {throughput['clips_per_s']:.2f} "
        f"clips/s ({throughput['processed_clips_per_s']:.2f} clips/s counting reference clips)"
    )
    print(
        f"  again on the warm cache: {throughput['warm_seconds']:.2f} s = "
        f"{throughput['warm_clips_per_s']:.1f} clips/s, same numbers: "
        f"{'yes' if throughput['warm_equals_cold'] else 'NO'}"
    )
    warm = ", ".join(f"{k} {v:.2f} s" for k, v in throughput["warm_runtime"].items())
    print(f"    ({warm})")
    total = sum(throughput["stages"].values())
    print(f"  {'stage':<28} {'seconds':>8} {'share':>6}")
    for stage, seconds in throughput["stages"].items():
        print(f"  {stage:<28} {seconds:8.2f} {seconds / total:6.1%}")
    if not memory:
        return
    print("peak resident memory of a scoring process (fresh process per size)")
    print(
        f"  {'clips':>6} {'seconds':>8} {'after build MiB':>16} {'peak MiB':>9} {'peak-build':>11}"
    )
    for clips, found in memory.items():
        print(
            f"  {clips:>6} {found['seconds']:8.1f} {found['rss_after_build_mib']:16.1f} "
            f"{found['peak_mib']:9.1f} {found['peak_over_build_mib']:11.1f}"
        )
    sizes = sorted(memory)
    if len(sizes) > 1:
        ratio = memory[sizes[-1]]["peak_mib"] / memory[sizes[0]]["peak_mib"]
        print(ratio_line(f"peak {sizes[-1]} clips / peak {sizes[0]} clips", ratio, "<= 1.2"))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report, and return the numbers."""
    args = parse_args(argv)
    if args.child_demo is not None:
        args.demo = args.child_demo
        found = memory_child(args)
        print(json.dumps(found))
        return found

    import torch

    from tavgbench.data.demo import write_demo

    print(
        f"cpu cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, "
        f"device: {args.device}, batch size: {args.batch_size}, metrics: {','.join(args.metrics)}"
    )
    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tavgbench-score-"))
        )
        work.mkdir(parents=True, exist_ok=True)
        demo = work / f"demo-{args.clips}"
        write_demo(demo, n_clips=args.clips, seed=0)
        with tempfile.TemporaryDirectory(prefix="tavgbench-score-cache-") as cache:
            throughput = measure_throughput(demo, Path(cache), args, args.clips)
        memory = {n: measure_memory(n, work, args) for n in args.memory_clips}
    _print_report(throughput, memory)
    results: dict[str, Any] = {"throughput": throughput, "memory": memory}
    sizes = sorted(memory)
    if len(sizes) > 1:
        results["peak_ratio"] = memory[sizes[-1]]["peak_mib"] / memory[sizes[0]]["peak_mib"]
    return results


if __name__ == "__main__":
    main()
