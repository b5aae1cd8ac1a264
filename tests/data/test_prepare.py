"""`data prepare`: AudioSet CSV parsing and exact segment cuts from generated source videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tavgbench.data.prepare import (
    Segment,
    cut_segment,
    load_segments,
    parse_segments_csv,
    prepare_clips,
)
from tavgbench.errors import ManifestError, MediaError
from tavgbench.media import decode_audio, decode_frames, probe, write_audible_video

RATE = 16000
FPS = 12

# The official layout: three '#' header lines, spaces after commas, quoted label lists.
CSV_TEXT = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=4, num_segs=5, num_unique_labels=3, num_positive_labels=6
# YTID, start_seconds, end_seconds, positive_labels
srcAAAAAAAA, 1.500, 3.000, "/m/09x0r,/m/04rlf"
-srcBBBBBBB, 0.000, 1.000, "/m/0jbk"
missingYTID, 30.000, 40.000, "/m/09x0r"
brokenYTIDx, 0.000, 1.000, "/m/09x0r"
srcAAAAAAAA, 3.000, 9.000, "/m/04rlf"
"""


def _chirp(seconds: float) -> np.ndarray:
    """A 200 -> 2000 Hz sweep: never periodic, so its alignment has one answer."""
    t = np.arange(round(seconds * RATE)) / RATE
    phase = 2 * np.pi * (200 * t + (1800 / (2 * seconds)) * t**2)
    return (0.4 * np.sin(phase)).astype(np.float32)


def _frames(n: int) -> np.ndarray:
    """Frame k is filled with grey level 5 * k + 5: the index can be read back after coding."""
    frames = np.empty((n, 32, 48, 3), np.uint8)
    for k in range(n):
        frames[k] = 5 * k + 5
    return frames


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    write_audible_video(folder / "srcAAAAAAAA.mp4", _frames(48), FPS, _chirp(4.0), RATE)
    write_audible_video(folder / "sub" / "-srcBBBBBBB.mp4", _frames(24), FPS, _chirp(2.0), RATE)
    (folder / "brokenYTIDx.mp4").write_bytes(b"not a video at all" * 10)
    return folder


def test_parse_official_csv() -> None:
    segments = parse_segments_csv(CSV_TEXT)
    assert len(segments) == 5
    first = segments[0]
    assert first == Segment("srcAAAAAAAA", 1.5, 3.0, ("/m/09x0r", "/m/04rlf"), 4)
    assert first.clip_id == "srcAAAAAAAA_1500_3000"
    assert segments[1].clip_id == "-srcBBBBBBB_0_1000"
    assert Segment("x", 0.0005, 10.0).clip_id == "x_0_10000"  # round-half-even of 0.5 ms


def test_parse_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="line 2: need 0 <= start < end"):
        parse_segments_csv('# h\nabc, 5, 4, "x"\n')
    with pytest.raises(ManifestError, match="line 1: expected"):
        parse_segments_csv("abc, 5\n")
    with pytest.raises(ManifestError, match="no segments"):
        parse_segments_csv("# only\n# headers\n")
    with pytest.raises(ManifestError, match="not found"):
        load_segments(tmp_path / "none.csv")


def test_cut_is_exact(sources: Path, tmp_path: Path) -> None:
    out = cut_segment(sources / "srcAAAAAAAA.mp4", 1.5, 3.0, tmp_path / "clip.mp4")
    info = probe(out)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    # 1.5 s at 12 fps: exactly 18 frames; container duration within one frame (1/12 s).
    frames = decode_frames(out)
    assert len(frames) == 18
    assert info.duration == pytest.approx(1.5, abs=1 / FPS)
    # Frame k of the clip is source frame 18 + k: grey level 5 * (18 + k) + 5, within 2 levels
    # of H.264 coding error on flat frames (neighbouring frames differ by 5).
    levels = frames.reshape(18, -1).mean(axis=1)
    np.testing.assert_allclose(levels, 5 * (18 + np.arange(18)) + 5, atol=2)
    # Audio: 1.5 s of samples (decoder crops to the container duration, within one AAC frame of
    # 1024 samples), aligned with the source's [1.5, 3.0) s to within 2 samples (cross-correlation
    # peak against the source after the same AAC round trip).
    clip_audio, rate = decode_audio(out)
    source_audio, _ = decode_audio(sources / "srcAAAAAAAA.mp4")
    assert rate == RATE
    assert abs(len(clip_audio) - 1.5 * RATE) <= 1024
    window = clip_audio[2000:20000]
    lags = range(-100, 101)
    scores = [
        float(window @ source_audio[24000 + 2000 + lag : 24000 + 20000 + lag]) for lag in lags
    ]
    assert abs(lags[int(np.argmax(scores))]) <= 2


def test_prepare_reports_and_resumes(sources: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "segments.csv"
    csv_path.write_text(CSV_TEXT)
    out = tmp_path / "clips"
    seen: list[tuple[int, int]] = []
    report = prepare_clips(
        load_segments(csv_path), sources, out, progress=lambda d, t: seen.append((d, t))
    )
    assert sorted(report.written) == ["-srcBBBBBBB_0_1000", "srcAAAAAAAA_1500_3000"]
    assert set(report.failed) == {
        "missingYTID_30000_40000",
        "brokenYTIDx_0_1000",
        "srcAAAAAAAA_3000_9000",
    }
    assert "no source video missingYTID.*" in report.failed["missingYTID_30000_40000"]
    assert "not a readable media file" in report.failed["brokenYTIDx_0_1000"]
    assert "before the segment end 9 s" in report.failed["srcAAAAAAAA_3000_9000"]
    assert seen[-1] == (5, 5)
    assert len(decode_frames(out / "-srcBBBBBBB_0_1000.mp4")) == 12
    again = prepare_clips(load_segments(csv_path), sources, out)
    assert sorted(again.existing) == sorted(report.written) and not again.written


def test_source_without_audio_is_refused(tmp_path: Path) -> None:
    silent = write_audible_video(tmp_path / "v.mp4", _frames(12), FPS, None, RATE)
    with pytest.raises(MediaError, match="has no audio stream"):
        cut_segment(silent, 0.0, 0.5, tmp_path / "o.mp4")


def test_max_side_and_workers(sources: Path, tmp_path: Path) -> None:
    segments = [Segment("srcAAAAAAAA", 0.0, 1.0), Segment("-srcBBBBBBB", 0.5, 1.5)]
    report = prepare_clips(segments, sources, tmp_path / "o", max_side=24, workers=2)
    assert sorted(report.written) == ["-srcBBBBBBB_500_1500", "srcAAAAAAAA_0_1000"]
    info = probe(tmp_path / "o" / "srcAAAAAAAA_0_1000.mp4")
    assert (info.width, info.height) == (24, 16)
