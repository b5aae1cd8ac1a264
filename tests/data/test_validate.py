"""Submission validation: each failure produced by a real malformed file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest

from tavgbench.data.splits import ClipEntry, Split
from tavgbench.data.validate import validate_submission
from tavgbench.errors import TavgbenchError
from tavgbench.media import write_audible_video
from tests.conftest import moving_frames, tone


def _split(*ids: str) -> Split:
    return Split("test", tuple(ClipEntry(i, f"caption {i}") for i in ids))


def _strip_audio(src: Path, dst: Path) -> None:
    """Remux only the video stream with PyAV (what `ffmpeg -an -c copy` does)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)


def _problems(report, clip_id: str) -> str:
    return " | ".join(next(c for c in report.clips if c.id == clip_id).problems)


def test_every_failure_kind(tmp_path: Path, make_clip) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    make_clip("good.mp4", folder=sub)
    make_clip("sep.mp4", folder=sub, audio=False)
    wav = sub / "sep.wav"
    with av.open(str(wav), "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        f = av.AudioFrame.from_ndarray((tone(2.0)[None] * 30000).astype(np.int16), format="s16",
                                       layout="mono")  # fmt: skip
        f.sample_rate = 16000
        c.mux(s.encode(f))
        c.mux(s.encode())
    full = make_clip("trunc_src.mp4", frames=48)
    data = full.read_bytes()
    (sub / "truncated.mp4").write_bytes(data[: len(data) // 3])
    _strip_audio(make_clip("noaudio_src.mp4"), sub / "noaudio.mp4")
    (sub / "text.mp4").write_text("I am not a video\n")
    outside = make_clip("outside.mp4")
    os.symlink(outside, sub / "link.mp4")
    make_clip("oneframe.mp4", folder=sub, frames=1)
    write_audible_video(
        sub / "silent.mp4", moving_frames(24), 12, np.zeros(32000, np.float32), 16000
    )
    make_clip("surround.mp4", folder=sub, rate=96000, channels=6)
    make_clip("mismatch.mp4", folder=sub, seconds=4.0)
    (sub / "nested").mkdir()
    make_clip("dup.mp4", folder=sub)
    make_clip("dup.mp4", folder=sub / "nested")
    make_clip("stranger.mp4", folder=sub)
    (sub / "notes.txt").write_text("extra")
    (sub / "generation.json").write_text("{}")
    ids = ["good", "sep", "truncated", "noaudio", "text", "link", "oneframe", "silent",
           "surround", "mismatch", "dup", "missing"]  # fmt: skip
    report = validate_submission(sub, _split(*ids))
    ok = {c.id for c in report.clips if c.ok}
    assert ok == {"good", "sep", "surround"}
    assert "missing" in _problems(report, "missing")
    assert "truncated.mp4" in _problems(report, "truncated")
    assert "no audio stream and no noaudio.wav" in _problems(report, "noaudio")
    assert "text.mp4: not a readable media file" in _problems(report, "text")
    assert "symlink points outside" in _problems(report, "link")
    assert "too short: 1 frames" in _problems(report, "oneframe")
    assert "silent audio" in _problems(report, "silent")
    assert "audio lasts 4.000 s but video 2.000 s" in _problems(report, "mismatch")
    assert "duplicate files" in _problems(report, "dup")
    assert report.extra_files == ["notes.txt", "stranger.mp4"]
    assert not report.all_ok
    out = report.write_json(tmp_path / "report.json")
    loaded = json.loads(out.read_text())
    assert [c["id"] for c in loaded["clips"]] == ids
    assert {"id", "ok", "problems", "files"} <= set(loaded["clips"][0])
    assert loaded["summary"] == {"expected": 12, "found": 11, "valid": 3, "invalid": 9,
                                 "extra_files": 2}  # fmt: skip


def test_all_valid(tmp_path: Path, make_clip) -> None:
    for name in ("a", "b"):
        make_clip(f"{name}.mp4", folder=tmp_path)
    assert validate_submission(tmp_path, _split("a", "b")).all_ok


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(TavgbenchError, match="submission folder not found"):
        validate_submission(tmp_path / "nope", _split("a"))
