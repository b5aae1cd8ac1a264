"""Tests of the procedural demo split: scenes, degradation, written layout, stamp."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tavgbench.data import demo
from tavgbench.data.splits import load_manifest
from tavgbench.errors import TavgbenchError
from tavgbench.media import decode_audio, decode_frames

# Round-robin families: five clips are one of each family.
N_CLIPS = 5
SEED = 0


@pytest.fixture(scope="module")
def specs() -> list[demo.SceneSpec]:
    return demo.demo_specs(N_CLIPS, SEED)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[demo.DemoLayout, demo.DemoLayout]:
    """The same demo written twice into two folders, the first with a progress callback."""
    calls: list[tuple[int, int]] = []
    first = demo.write_demo(
        tmp_path_factory.mktemp("demo_a"),
        n_clips=N_CLIPS,
        seed=SEED,
        progress=lambda done, total: calls.append((done, total)),
    )
    total = len(demo.SETS) * N_CLIPS
    assert calls == [(k, total) for k in range(1, total + 1)]
    second = demo.write_demo(tmp_path_factory.mktemp("demo_b"), n_clips=N_CLIPS, seed=SEED)
    return first, second


def _clip_paths(layout: demo.DemoLayout) -> list[Path]:
    return [folder / f"{i}.mp4" for folder in layout.clip_dirs().values() for i in layout.ids]


# --- specs ------------------------------------------------------------------------------------


def test_default_specs_are_varied_and_well_formed() -> None:
    specs = demo.demo_specs()
    assert [s.id for s in specs] == [f"demo_{i:03d}" for i in range(24)]
    families = [s.family for s in specs]
    assert {families.count(f) for f in demo.FAMILIES} <= {4, 5}
    assert len({s.caption for s in specs}) == len(specs)
    assert len({s.colour for s in specs}) >= 6
    for s in specs:
        assert s.duration in demo.DURATIONS
        assert 2 <= s.duration <= 4
        shapes, motions = demo.FAMILIES[s.family]
        assert s.shape in shapes and s.motion in motions
        assert f"{s.colour} {s.shape}" in s.caption
        assert f"{s.colour} {s.shape}" in s.video_caption
        assert s.audio_caption and s.audio_caption not in s.video_caption


def test_specs_depend_on_the_seed_only() -> None:
    assert demo.demo_specs(24, 0) == demo.demo_specs(24, 0)
    assert demo.demo_specs(24, 0) != demo.demo_specs(24, 1)


def test_specs_reject_bad_arguments() -> None:
    with pytest.raises(TavgbenchError, match="n_clips"):
        demo.demo_specs(0)
    with pytest.raises(TavgbenchError, match="seed"):
        demo.demo_specs(4, -1)
    with pytest.raises(TavgbenchError, match="at least 2"):
        demo.write_demo(Path("unused"), n_clips=1)


# --- scenes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(N_CLIPS))
def test_scene_is_reproducible_with_exact_sizes(specs: list[demo.SceneSpec], index: int) -> None:
    spec = specs[index]
    frames, waveform = demo.generate_scene(spec, demo.clip_rng(SEED, "reference", index))
    again_frames, again_waveform = demo.generate_scene(
        spec, demo.clip_rng(SEED, "reference", index)
    )
    np.testing.assert_array_equal(frames, again_frames)
    np.testing.assert_array_equal(waveform, again_waveform)
    assert frames.dtype == np.uint8
    assert frames.shape == (round(spec.duration * 16), 128, 160, 3)
    assert waveform.dtype == np.float32
    assert waveform.shape == (round(spec.duration * 16000),)
    # Peak normalised to a draw in [0.5, 0.85]; RMS floor 1e-3 rules out near-silence.
    assert 0.5 <= np.max(np.abs(waveform)) <= 0.85 + 1e-6
    assert np.sqrt(np.mean(waveform.astype(np.float64) ** 2)) > 1e-3
    # Something moves or changes: not a still picture.
    assert np.abs(np.diff(frames.astype(np.int16), axis=0)).max() > 50


@pytest.mark.parametrize("index", range(N_CLIPS))
def test_other_streams_draw_other_details(specs: list[demo.SceneSpec], index: int) -> None:
    spec = specs[index]
    frames, waveform = demo.generate_scene(spec, demo.clip_rng(SEED, "reference", index))
    for rng in (
        demo.clip_rng(SEED, "faithful", index),
        demo.clip_rng(SEED + 1, "reference", index),
    ):
        other_frames, other_waveform = demo.generate_scene(spec, rng)
        assert other_frames.shape == frames.shape
        assert not np.array_equal(other_frames, frames)
        assert not np.array_equal(other_waveform, waveform)


def test_scene_sizes_follow_the_arguments(specs: list[demo.SceneSpec]) -> None:
    spec = specs[0]
    frames, waveform = demo.generate_scene(
        spec, np.random.default_rng(0), size=(64, 96), fps=10, sample_rate=8000
    )
    assert frames.shape == (round(spec.duration * 10), 64, 96, 3)
    assert waveform.shape == (round(spec.duration * 8000),)


def test_scene_rejects_fractional_counts_and_short_clips(specs: list[demo.SceneSpec]) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="duration \\* fps"):
        demo.generate_scene(specs[0], rng, fps=12.3)
    with pytest.raises(ValueError, match="at least 1 s"):
        demo.generate_scene(replace(specs[0], duration=0.5), rng)


# --- degradation ------------------------------------------------------------------------------


def test_blur_keeps_flat_frames_and_spreads_a_point() -> None:
    flat = np.full((2, 32, 40, 3), 77, np.uint8)
    np.testing.assert_array_equal(demo.blur_frames(flat), flat)
    point = np.zeros((1, 41, 41, 3), np.uint8)
    point[0, 20, 20] = 255
    blurred = demo.blur_frames(point, sigma=2.0).astype(np.float64)
    # Reference: 255 x the outer product of the 1-D Gaussian (sigma 2, cut at 3 sigma = 6 px,
    # normalised), built here by hand; the uint8 result is that rounded, so within 0.5 (+ eps).
    taps = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    taps /= taps.sum()
    expected = np.zeros((41, 41))
    expected[14:27, 14:27] = 255 * np.outer(taps, taps)
    for channel in range(3):
        assert np.abs(blurred[0, :, :, channel] - expected).max() <= 0.5 + 1e-6


def test_shuffle_reorders_every_frame_set() -> None:
    frames = np.arange(12, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    shuffled = demo.shuffle_frames(frames, np.random.default_rng(3))
    order = shuffled[:, 0, 0, 0]
    assert sorted(order.tolist()) == list(range(12))
    assert order.tolist() != list(range(12))
    two = frames[:2]
    for seed in range(8):
        assert demo.shuffle_frames(two, np.random.default_rng(seed))[0, 0, 0, 0] == 1


def test_audio_donors_are_derangements_across_families() -> None:
    for n in range(2, 33):
        families = [s.family for s in demo.demo_specs(n, 0)]
        for seed in range(4):
            donors = demo.audio_donors(families, np.random.default_rng(seed))
            assert sorted(donors.tolist()) == list(range(n))
            assert all(donors[i] != i for i in range(n))
            assert all(families[donors[i]] != families[i] for i in range(n))
    one_family = demo.audio_donors(["spin"] * 4, np.random.default_rng(0))
    assert all(one_family[i] != i for i in range(4))
    with pytest.raises(TavgbenchError, match="at least 2"):
        demo.audio_donors(["spin"], np.random.default_rng(0))


def test_fit_length_crops_and_repeats() -> None:
    wave = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(demo.fit_length(wave, 3), [0, 1, 2])
    np.testing.assert_array_equal(demo.fit_length(wave, 7), [0, 1, 2, 3, 4, 0, 1])


# --- the written demo -------------------------------------------------------------------------


def test_layout_manifest_and_stamp(written, specs: list[demo.SceneSpec]) -> None:
    layout, _ = written
    assert layout.generated
    assert layout.ids == tuple(s.id for s in specs)
    with layout.manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == demo.MANIFEST_COLUMNS
        rows = list(reader)
    assert [r["id"] for r in rows] == [s.id for s in specs]
    assert [r["caption"] for r in rows] == [s.caption for s in specs]
    assert [r["audio_caption"] for r in rows] == [s.audio_caption for s in specs]
    assert [float(r["duration"]) for r in rows] == [s.duration for s in specs]
    split = load_manifest(layout.manifest, name="demo")
    assert split.ids == list(layout.ids)
    assert all(path.is_file() for path in _clip_paths(layout))
    stamp = json.loads(layout.stamp.read_text())
    assert stamp["version"] == demo.DEMO_VERSION
    assert (stamp["seed"], stamp["n_clips"]) == (SEED, N_CLIPS)


def test_written_clips_are_identical_across_runs(written) -> None:
    first, second = written
    assert first.manifest.read_bytes() == second.manifest.read_bytes()
    for a, b in zip(_clip_paths(first), _clip_paths(second), strict=True):
        np.testing.assert_array_equal(decode_frames(a), decode_frames(b))
        np.testing.assert_array_equal(decode_audio(a)[0], decode_audio(b)[0])


def test_written_clips_have_the_declared_lengths_and_sound(
    written, specs: list[demo.SceneSpec]
) -> None:
    layout, _ = written
    for folder in layout.clip_dirs().values():
        for spec in specs:
            path = folder / f"{spec.id}.mp4"
            assert len(decode_frames(path)) == round(spec.duration * demo.DEFAULT_FPS)
            waveform, rate = decode_audio(path)
            assert rate == demo.DEFAULT_SAMPLE_RATE
            # AAC frames are 1024 samples: the decoded length is within one frame of the clip.
            assert abs(len(waveform) - spec.duration * rate) <= 1024
            assert np.max(np.abs(waveform)) > 0.1


def test_faithful_redraws_and_degraded_is_blurred(written, specs: list[demo.SceneSpec]) -> None:
    layout, _ = written
    dirs = layout.clip_dirs()
    for index, spec in enumerate(specs):
        reference = decode_frames(dirs["reference"] / f"{spec.id}.mp4").astype(np.float64)
        faithful = decode_frames(dirs["faithful"] / f"{spec.id}.mp4").astype(np.float64)
        degraded = decode_frames(dirs["degraded"] / f"{spec.id}.mp4").astype(np.float64)
        assert faithful.shape == reference.shape == degraded.shape
        # A fresh draw: other shades and positions, so frames differ well beyond codec noise
        # (mean absolute difference measured >= 5.2 levels on the 24 default clips).
        assert np.abs(faithful - reference).mean() > 2.0
        # The decoded degraded clip is the blurred, shuffled draw; H.264 at crf 18 adds a mean
        # absolute error measured <= 1.7 levels on the 24 default clips, so 3 levels allowed.
        rng = demo.clip_rng(SEED, "degraded", index)
        drawn, _ = demo.generate_scene(spec, rng)
        expected = demo.shuffle_frames(demo.blur_frames(drawn), rng).astype(np.float64)
        assert np.abs(degraded - expected).mean() < 3.0
        assert (
            np.abs(degraded - demo.blur_frames(drawn)).mean() > np.abs(degraded - expected).mean()
        )

        # Strongest horizontal edge: a 1-px anti-aliased edge of contrast C steps by up to C per
        # pixel; after a Gaussian of sigma 3 the steepest step is C / (sqrt(2 pi) 3) ~ 0.13 C.
        # Measured ratio <= 0.41 on the 24 default clips (soft edges, codec ringing): 0.6 allowed.
        def steepest_edge(frames: np.ndarray) -> float:
            return float(np.abs(np.diff(frames, axis=2)).max())

        assert steepest_edge(degraded) < 0.6 * steepest_edge(faithful)


def _best_lag_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest normalised cross-correlation over all lags (the codec delays and filters)."""
    n = len(a) + len(b)
    spectrum = np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n))
    return float(
        np.max(np.abs(np.fft.irfft(spectrum, n))) / (np.linalg.norm(a) * np.linalg.norm(b))
    )


def test_degraded_sound_comes_from_a_clip_of_another_family(
    written, specs: list[demo.SceneSpec]
) -> None:
    layout, _ = written
    sounds = [
        demo.generate_scene(spec, demo.clip_rng(SEED, "degraded", i))[1]
        for i, spec in enumerate(specs)
    ]
    sources = []
    for spec in specs:
        heard, _ = decode_audio(layout.submission_dirs["degraded"] / f"{spec.id}.mp4")
        scores = [
            _best_lag_correlation(heard, demo.fit_length(sound, len(heard))) for sound in sounds
        ]
        best = int(np.argmax(scores))
        # AAC at 192 kb/s keeps the donor near 1: measured >= 0.95 for the donor and <= 0.38
        # for every other scene on the 24 default clips.
        assert scores[best] > 0.8
        sources.append(best)
    assert sorted(sources) == list(range(len(specs)))
    assert all(source != i for i, source in enumerate(sources))
    assert all(specs[s].family != specs[i].family for i, s in enumerate(sources))


# --- the stamp --------------------------------------------------------------------------------


def test_complete_demo_is_not_rewritten(written) -> None:
    layout, _ = written
    paths = [layout.manifest, layout.stamp, *_clip_paths(layout)]
    before = [p.stat().st_mtime_ns for p in paths]
    again = demo.write_demo(layout.root, n_clips=N_CLIPS, seed=SEED)
    assert not again.generated
    assert again.ids == layout.ids
    assert [p.stat().st_mtime_ns for p in paths] == before


def test_incomplete_or_other_demo_is_regenerated(written, tmp_path: Path) -> None:
    layout, _ = written
    root = tmp_path / "copy"
    shutil.copytree(layout.root, root)
    missing = root / "submissions" / "degraded" / f"{layout.ids[1]}.mp4"
    missing.unlink()
    leftover = root / "reference" / f".{layout.ids[0]}.k2j4h1.mp4"
    leftover.write_bytes(b"half a file")
    redone = demo.write_demo(root, n_clips=N_CLIPS, seed=SEED)
    assert redone.generated
    assert missing.is_file() and not leftover.exists()

    # Another seed and fewer clips: new stamp, and clips beyond the new split are removed.
    other = demo.write_demo(root, n_clips=2, seed=SEED + 1)
    assert other.generated
    assert json.loads(other.stamp.read_text())["seed"] == SEED + 1
    for folder in other.clip_dirs().values():
        assert sorted(p.name for p in folder.iterdir()) == ["demo_000.mp4", "demo_001.mp4"]
    assert not demo.write_demo(root, n_clips=2, seed=SEED + 1).generated
