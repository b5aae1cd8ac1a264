"""The annotation pipeline end to end against a real chat server, with stand-in captioners.

The captioners here are test doubles (deterministic strings from pixel and audio statistics) so
that these tests exercise decoding, batching, the LLM step, resume, cache and error reporting;
the real captioners are tested on tiny random models in test_captioners.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tavgbench.annotate import prompts
from tavgbench.annotate.llm import ChatClient
from tavgbench.annotate.pipeline import AnnotateError, annotate_clips, read_done_ids
from tavgbench.data.stats import caption_stats, load_captions
from tavgbench.media import write_audible_video

GREYS = {"clip_a": 50, "clip_b": 100, "clip_c": 150, "clip_d": 200}


class GreyFrameCaptioner:
    model_id = "test/grey-frames"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def caption_frames(self, frames: Sequence[np.ndarray]) -> list[str]:
        self.calls.append(len(frames))
        # clip_b's frames make the stand-in say "poison": the server then answers malformed.
        return [
            "poison" if abs(float(f.mean()) - 100) < 10 else f"grey {round(float(f.mean()), -1):g}"
            for f in frames
        ]


class LoudnessAudioCaptioner:
    model_id = "test/loudness"
    sample_rate = 16000

    def caption_audio(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        return [f"a tone of {len(w) / self.sample_rate:.1f} seconds" for w in waveforms]


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    folder = tmp_path / "clips"
    for name, grey in GREYS.items():
        # Lengths 1, 1.5, 2, 2.5 s: each clip gets its own audio caption (no shared cache key).
        seconds = grey / 100 + 0.5
        t = np.arange(round(seconds * 16000)) / 16000
        frames = np.full((round(seconds * 12), 32, 32, 3), grey, np.uint8)
        write_audible_video(folder / f"{name}.mp4", frames, 12, 0.3 * np.sin(900 * t), 16000)
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    return folder


def _run(clips: Path, out: Path, server, cache: Path, model: str = "m", **options):
    llm = ChatClient(server.url, model, cache_dir=cache, sleep=lambda _: None, timeout=10)
    progress: list[tuple[int, int]] = []
    report = annotate_clips(
        clips,
        out,
        frame_captioner=GreyFrameCaptioner(),
        audio_captioner=LoudnessAudioCaptioner(),
        llm=llm,
        num_frames=4,
        batch_size=2,
        concurrency=2,
        progress=lambda d, t: progress.append((d, t)),
        **options,
    )
    return report, llm, progress


def test_run_resume_and_cache(clips: Path, tmp_path: Path, chat_server) -> None:
    out = tmp_path / "captions.jsonl"
    chat_server.failures = [(503, b"warming up")]
    report, llm, progress = _run(clips, out, chat_server, tmp_path / "cache")
    assert sorted(report.written) == ["clip_a", "clip_c", "clip_d"]
    assert set(report.failed) == {"broken", "clip_b"}
    assert "malformed chat-completions response" in report.failed["clip_b"]
    assert "not a readable media file" in report.failed["broken"]
    assert progress[-1] == (5, 5)
    # 3 good clips x 3 calls + 1 retried 503 + clip_b's one malformed visual call.
    assert llm.requests_sent == 11

    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    a = rows["clip_a"]
    assert a["frame_captions"] == ["grey 50"] * 4
    assert a["audio_caption"] == "a tone of 1.0 seconds"
    assert a["visual_description"] == "R:4. grey 50"
    assert a["audio_description"] == "R:Audio caption: a tone of 1.0 seconds"
    assert a["caption"] == "R:Audio: R:Audio caption: a tone of 1.0 seconds"
    assert a["duration"] == pytest.approx(1.0, abs=0.1)
    assert a["models"] == {"frames": "test/grey-frames", "audio": "test/loudness", "llm": "m"}
    assert a["prompt_version"] == prompts.PROMPT_VERSION
    meta = json.loads((tmp_path / "captions.jsonl.meta.json").read_text())
    assert meta["prompts"]["visual"] == prompts.VISUAL
    # The output is a caption file for `data stats`.
    assert caption_stats(load_captions(out)).clips == 3

    # Resume: done ids are skipped; only the failed clips are tried again.
    again, llm2, _ = _run(clips, out, chat_server, tmp_path / "cache")
    assert sorted(again.skipped) == ["clip_a", "clip_c", "clip_d"] and not again.written
    assert llm2.requests_sent == 1  # clip_b's visual request, never cached

    # A new output file with the same cache: the good clips need no request at all.
    fresh, llm3, _ = _run(clips, tmp_path / "other.jsonl", chat_server, tmp_path / "cache")
    assert sorted(fresh.written) == ["clip_a", "clip_c", "clip_d"]
    assert llm3.requests_sent == 1 and llm3.cache_hits == 9


def test_torn_line_and_mismatched_resume(clips: Path, tmp_path: Path, chat_server) -> None:
    out = tmp_path / "c.jsonl"
    _run(clips, out, chat_server, tmp_path / "cache", ids=["clip_a", "clip_c"])
    with out.open("a") as handle:
        handle.write('{"id": "clip_d", "capt')  # a run killed mid-write
    assert read_done_ids(out) == {"clip_a", "clip_c"}
    report, _, _ = _run(clips, out, chat_server, tmp_path / "cache", ids=["clip_d"])
    assert report.written == ["clip_d"]
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    # Lines are appended in completion order, so only clip_d's place is fixed.
    assert sorted(ids[:2]) == ["clip_a", "clip_c"] and ids[2:] == ["clip_d"]
    with pytest.raises(AnnotateError, match="different models"):
        _run(clips, out, chat_server, tmp_path / "cache", model="another-llm")


def test_bad_folder(tmp_path: Path, chat_server) -> None:
    with pytest.raises(AnnotateError, match="clip folder not found"):
        _run(tmp_path / "none", tmp_path / "o.jsonl", chat_server, tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotateError, match="no .mp4 clips"):
        _run(tmp_path / "empty", tmp_path / "o.jsonl", chat_server, tmp_path / "cache")
