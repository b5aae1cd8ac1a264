"""Media I/O round trips on generated clips (PyAV/FFmpeg is the reference codec)."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tavgbench.errors import MediaError
from tavgbench.media import (
    decode_audio,
    decode_frames,
    frame_times,
    probe,
    read_wav,
    write_audible_video,
)
from tests.conftest import moving_frames, tone


def test_round_trip_frames_and_exact_audio_length(tmp_path: Path) -> None:
    frames = moving_frames(30, 64, 80)
    wave = tone(2.5, 16000)
    path = write_audible_video(tmp_path / "a.mp4", frames, 12, wave, 16000)
    info = probe(path)
    assert (info.width, info.height, info.fps, info.num_frames) == (80, 64, 12.0, 30)
    assert info.has_audio and info.sample_rate == 16000 and info.channels == 1
    decoded = decode_frames(path)
    assert decoded.shape == frames.shape
    # H.264 at crf 18 on smooth content: mean absolute error of a few grey levels.
    assert np.abs(decoded.astype(int) - frames).mean() < 4.0
    audio, rate = decode_audio(path)
    # AAC adds priming and padding samples; decode crops to the container duration exactly.
    assert rate == 16000 and len(audio) == len(wave)
    # AAC at 192 kb/s keeps a 440 Hz tone aligned (no priming offset) within a small error.
    assert np.abs(audio[800:-800] - wave[800:-800]).max() < 0.05


def test_even_sampling_times_and_counts(tmp_path: Path) -> None:
    frames = moving_frames(48, 32, 48)
    # Each frame carries its index in the red channel so the sampled frame can be identified.
    frames[..., 0] = (np.arange(48) * 5)[:, None, None]
    path = write_audible_video(tmp_path / "idx.mp4", frames, 24, tone(2.0), 16000)
    sampled = decode_frames(path, num_frames=16)
    assert sampled.shape[0] == 16
    expected = np.floor(frame_times(2.0, num_frames=16) * 24).astype(int)
    got = np.round(sampled[..., 0].astype(float).mean(axis=(1, 2)) / 5).astype(int)
    assert np.abs(got - expected).max() <= 1
    at_fps = decode_frames(path, fps=6)
    assert at_fps.shape[0] == 12


def test_variable_frame_rate(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=1000)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(20):
            img = np.full((48, 64, 3), i * 12, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
            t += 40 if i % 2 else 120  # alternating 25 fps and ~8 fps
        container.mux(stream.encode())
    all_frames = decode_frames(path)
    assert all_frames.shape[0] == 20
    sampled = decode_frames(path, num_frames=8)
    assert sampled.shape[0] == 8
    # Sampled frames are in display order.
    levels = sampled[:, 0, 0, 0].astype(int)
    assert np.all(np.diff(levels) >= -2)


def _set_rotation_matrix(path: Path) -> None:
    """Write a 90-degree display matrix into the video track header (as phones do)."""
    data = bytearray(path.read_bytes())
    matrix = data.find(b"tkhd") + 4 + 40  # version/flags, times, ids, layer, volume: 40 bytes
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


def test_rotation_metadata_is_applied(tmp_path: Path) -> None:
    frames = np.zeros((12, 32, 64, 3), np.uint8)
    frames[:, :, :32] = 255  # left half white
    path = write_audible_video(tmp_path / "rot.mp4", frames, 12, tone(1.0), 16000)
    _set_rotation_matrix(path)
    info = probe(path)
    assert info.rotation == 270 and (info.width, info.height) == (32, 64)
    decoded = decode_frames(path, num_frames=2)
    assert decoded.shape == (2, 64, 32, 3)
    # Turned clockwise for display: the left half ends up on top.
    assert decoded[0, :28].mean() > 200 and decoded[0, 36:].mean() < 50


def test_odd_size_and_surround_high_rate(tmp_path: Path) -> None:
    frames = moving_frames(12, 63, 79)
    wave = tone(1.0, 96000, channels=6)
    path = write_audible_video(tmp_path / "odd51.mp4", frames, 12, wave, 96000)
    info = probe(path)
    assert (info.width, info.height, info.channels, info.sample_rate) == (79, 63, 6, 96000)
    assert decode_frames(path).shape == (12, 63, 79, 3)
    audio, rate = decode_audio(path)
    assert rate == 96000 and len(audio) == 96000
    audio16, rate16 = decode_audio(path, sample_rate=16000)
    assert rate16 == 16000 and abs(len(audio16) - 16000) <= 1


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_wav_rates(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "a.wav"
    wave = (tone(0.5, rate, channels=2) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            wave.T.reshape(1, -1).copy(), format="s16", layout="stereo"
        )
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    audio, got_rate = read_wav(path)
    assert got_rate == rate and len(audio) == wave.shape[1]
    np.testing.assert_allclose(audio, wave[0] / 32768.0, atol=1e-6)


def test_clear_errors(tmp_path: Path) -> None:
    text = tmp_path / "note.mp4"
    text.write_text("not a video")
    with pytest.raises(MediaError, match="note.mp4: not a readable media file"):
        probe(text)
    with pytest.raises(MediaError, match="file not found"):
        decode_frames(tmp_path / "missing.mp4")
    silent_video = write_audible_video(tmp_path / "v.mp4", moving_frames(12), 12, None, 16000)
    with pytest.raises(MediaError, match="has no audio stream"):
        decode_audio(silent_video)
    with pytest.raises(MediaError, match="uint8"):
        write_audible_video(tmp_path / "bad.mp4", np.zeros((3, 8, 8, 3)), 12, None, 16000)


def test_writing_is_deterministic(tmp_path: Path) -> None:
    frames = (np.random.default_rng(0).random((24, 48, 64, 3)) * 255).astype(np.uint8)
    decoded = []
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        path = write_audible_video(tmp_path / name, frames, 12, tone(2.0), 16000)
        decoded.append((decode_frames(path), decode_audio(path)[0]))
    for frames_i, audio_i in decoded[1:]:
        np.testing.assert_array_equal(frames_i, decoded[0][0])
        np.testing.assert_array_equal(audio_i, decoded[0][1])
