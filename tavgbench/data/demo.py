"""The procedural demo split: small audible videos made by code, with captions.

Nothing is downloaded. Each clip is a scene from one of five families, drawn with numpy and
given a soundtrack that matches what is seen:

* ``bounce``: a ball or block drops and bounces on the floor, a click at each impact;
* ``pulse``: a shape grows and shrinks while a humming tone swells and fades with its size;
* ``glide``: a shape rises, sinks or bobs while a tone's pitch follows its height;
* ``flash``: a shape flashes on and off, a burst of noise at each flash;
* ``spin``: a bar turns like a clock hand, a tick at every quarter turn.

:func:`write_demo` writes a real split (``split.csv`` and reference clips) and two example
submissions: ``faithful`` (fresh random draws of the same scenes: same family, shape, colour,
motion and caption, new positions, speeds, shades and sounds) and ``degraded`` (fresh draws,
then blurred, frames shuffled in time, and the soundtrack taken from a clip of another family).
Good metrics must rank faithful above degraded.

Every clip has its own random stream, derived from ``(seed, set name, clip index)`` with
:class:`numpy.random.SeedSequence`, so any one clip can be regenerated alone with
``generate_scene(spec, clip_rng(seed, set_name, index))``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage, signal

from tavgbench.errors import TavgbenchError
from tavgbench.media import write_audible_video

# Bump whenever the generated content (scenes, captions, degradation, layout) changes, so old
# demo folders are regenerated instead of being taken as complete.
DEMO_VERSION = "1"
DEFAULT_N_CLIPS = 24
DEFAULT_SIZE = (128, 160)
DEFAULT_FPS = 16
DEFAULT_SAMPLE_RATE = 16000
DEGRADED_BLUR_SIGMA = 3.0
# Whole seconds give whole frame and sample counts at any integer fps and sample rate.
DURATIONS = (2.0, 3.0, 4.0)
MANIFEST_COLUMNS = ("id", "caption", "video_caption", "audio_caption", "duration")
SETS = ("reference", "faithful", "degraded")

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 135, 25),
    "yellow": (235, 215, 35),
    "green": (45, 185, 65),
    "cyan": (35, 195, 215),
    "blue": (45, 85, 230),
    "purple": (145, 55, 200),
    "white": (235, 235, 235),
}

# family -> (shapes, motions)
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "bounce": (("ball", "block"), ("in place", "rightward", "leftward")),
    "pulse": (("ball", "square", "star"), ("slow", "fast")),
    "glide": (("ball", "square", "triangle"), ("rise", "sink", "bob")),
    "flash": (("star", "square", "ball"), ("in place", "around")),
    "spin": (("bar",), ("clockwise", "counterclockwise")),
}

_CLICK = "a sharp click at each impact, coming quicker as the bounces die down"
_HUM = "a low humming tone that {speed} swells and fades"
_HISS = "short bursts of hissing noise"
_TICK = "a steady mechanical ticking"
# (family, motion) -> (caption, video caption, audio caption); {s} is "a red ball" and the like.
_CAPTIONS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("bounce", "in place"): (
        "{s} drops and bounces on the floor with a click at each impact",
        "{s} drops and bounces on the floor",
        _CLICK,
    ),
    ("bounce", "rightward"): (
        "{s} bounces along the floor from left to right with a click at each impact",
        "{s} bounces along the floor from left to right",
        _CLICK,
    ),
    ("bounce", "leftward"): (
        "{s} bounces along the floor from right to left with a click at each impact",
        "{s} bounces along the floor from right to left",
        _CLICK,
    ),
    ("pulse", "slow"): (
        "{s} slowly pulses in the middle of the screen while a humming tone swells as it "
        "grows and fades as it shrinks",
        "{s} slowly grows and shrinks in the middle of the screen",
        _HUM.format(speed="slowly"),
    ),
    ("pulse", "fast"): (
        "{s} quickly pulses in the middle of the screen while a humming tone swells as it "
        "grows and fades as it shrinks",
        "{s} quickly grows and shrinks in the middle of the screen",
        _HUM.format(speed="quickly"),
    ),
    ("glide", "rise"): (
        "{s} rises up the screen while a tone's pitch rises with it",
        "{s} rises from the bottom to the top of the screen",
        "a steady tone whose pitch glides upward",
    ),
    ("glide", "sink"): (
        "{s} sinks down the screen while a tone's pitch falls with it",
        "{s} sinks from the top to the bottom of the screen",
        "a steady tone whose pitch glides downward",
    ),
    ("glide", "bob"): (
        "{s} bobs up and down while a tone's pitch follows its height",
        "{s} bobs up and down",
        "a tone whose pitch goes up and down like a siren",
    ),
    ("flash", "in place"): (
        "{s} flashes on and off with a burst of noise at each flash",
        "{s} flashes on and off in the middle of a dark screen",
        _HISS,
    ),
    ("flash", "around"): (
        "{s} flashes at different spots on the screen with a burst of noise at each flash",
        "{s} flashes on and off at different spots on a dark screen",
        _HISS,
    ),
    ("spin", "clockwise"): (
        "{s} spins clockwise like a clock hand with a tick at every quarter turn",
        "{s} spins clockwise around the centre like a clock hand",
        _TICK,
    ),
    ("spin", "counterclockwise"): (
        "{s} spins counterclockwise like a clock hand with a tick at every quarter turn",
        "{s} spins counterclockwise around the centre like a clock hand",
        _TICK,
    ),
}

# Fixed numbers, not hashes of the names, so streams never depend on Python's hash seed.
_STREAMS = {"specs": 0, "reference": 1, "faithful": 2, "degraded": 3, "degraded-audio": 4}
_CLIP_FILE = re.compile(r"demo_\d{3,}\.mp4")
# Temporary files a killed run can leave: write_audible_video's ".<id>.<random>.mp4" and
# _replace_atomically's ".split.<pid>.tmp.csv" and ".demo.<pid>.tmp.json".
_TEMP_FILE = re.compile(r"\.demo_\d{3,}\..+\.mp4|\.(split|demo)\.\d+\.tmp\.(csv|json)")


@dataclass(frozen=True)
class SceneSpec:
    """What a demo clip shows and sounds like; the random details are drawn per rendering.

    Attributes:
        id: clip id in the split (``demo_000``...).
        family: scene family, a key of :data:`FAMILIES`.
        shape: the moving object (``ball``, ``block``, ``square``, ``triangle``, ``star``, ``bar``).
        colour: colour name, a key of :data:`COLOURS`.
        motion: how the object moves, one of the family's motions.
        duration: seconds.
        caption: what is seen and heard.
        video_caption: what is seen.
        audio_caption: what is heard.
    """

    id: str
    family: str
    shape: str
    colour: str
    motion: str
    duration: float
    caption: str
    video_caption: str
    audio_caption: str


@dataclass(frozen=True)
class DemoLayout:
    """Where :func:`write_demo` put the demo split.

    Attributes:
        root: the demo folder.
        manifest: ``split.csv``.
        reference_dir: reference clips, ``<id>.mp4``.
        submission_dirs: ``{"faithful": ..., "degraded": ...}`` submission folders.
        stamp: ``demo.json``, written last; its presence marks a complete demo.
        ids: clip ids in manifest order.
        generated: False when a complete demo of the same seed and version was already there.
    """

    root: Path
    manifest: Path
    reference_dir: Path
    submission_dirs: Mapping[str, Path]
    stamp: Path
    ids: tuple[str, ...]
    generated: bool

    def clip_dirs(self) -> dict[str, Path]:
        """Folder of each clip set: ``reference``, ``faithful`` and ``degraded``."""
        return {"reference": self.reference_dir, **self.submission_dirs}


def clip_rng(seed: int, set_name: str, index: int) -> np.random.Generator:
    """The random stream of one clip of one set (``reference``, ``faithful``, ``degraded``)."""
    if set_name not in SETS:
        raise ValueError(f"unknown demo set {set_name!r}; expected one of {SETS}")
    return _stream_rng(seed, set_name, index)


def _stream_rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream], *index]))


def _subject(colour: str, shape: str) -> str:
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape}"


def demo_specs(n_clips: int = DEFAULT_N_CLIPS, seed: int = 0) -> list[SceneSpec]:
    """The scenes of the demo split: families in turn, distinct shape/colour/motion draws.

    Args:
        n_clips: number of clips (16 to 32 give useful statistics; at most 1000).
        seed: non-negative integer; the same seed gives the same list.

    Returns:
        Specs with ids ``demo_000``, ``demo_001``, ... and whole-second durations from 2 to 4.
    """
    _check_seed(seed)
    if not 1 <= n_clips <= 1000:
        raise TavgbenchError(f"demo: n_clips must be between 1 and 1000, got {n_clips}")
    rng = _stream_rng(seed, "specs")
    families = [list(FAMILIES)[i] for i in rng.permutation(len(FAMILIES))]
    # Each family walks through its own shuffled list of combinations, so clips of a family
    # repeat a combination only after using all of them.
    combos: dict[str, list[tuple[str, str, str]]] = {}
    for family, (shapes, motions) in FAMILIES.items():
        grid = [(s, c, m) for s in shapes for c in COLOURS for m in motions]
        combos[family] = [grid[i] for i in rng.permutation(len(grid))]
    specs = []
    for i in range(n_clips):
        family = families[i % len(families)]
        shape, colour, motion = combos[family][(i // len(families)) % len(combos[family])]
        caption, video_caption, audio_caption = (
            text.format(s=_subject(colour, shape)) for text in _CAPTIONS[family, motion]
        )
        specs.append(
            SceneSpec(
                id=f"demo_{i:03d}",
                family=family,
                shape=shape,
                colour=colour,
                motion=motion,
                duration=float(rng.choice(DURATIONS)),
                caption=caption,
                video_caption=video_caption,
                audio_caption=audio_caption,
            )
        )
    return specs


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TavgbenchError(f"demo: the seed must be a non-negative integer, got {seed!r}")


# ---------------------------------------------------------------------------------------------
# Scene rendering


@dataclass(frozen=True)
class _Canvas:
    height: int
    width: int
    duration: float
    frame_times: np.ndarray  # [t] seconds
    audio_times: np.ndarray  # [samples] seconds
    sample_rate: int
    yy: np.ndarray  # [h, 1] pixel-centre rows
    xx: np.ndarray  # [1, w] pixel-centre columns


def _whole(value: float, what: str) -> int:
    count = round(value)
    if count < 1 or abs(value - count) > 1e-6:
        raise ValueError(f"{what} must be a positive whole number, got {value}")
    return count


def generate_scene(
    scene: SceneSpec,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    fps: float = DEFAULT_FPS,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one clip of a scene: frames and a matching mono soundtrack.

    The spec fixes what is seen and heard; ``rng`` draws the details (shade, position, size,
    speed, pitch, timing), so two generators give two different renderings of one caption.

    Args:
        scene: what to render.
        rng: source of the random details; the same state gives identical arrays.
        size: ``(height, width)`` in pixels.
        fps: frames per second; ``duration * fps`` must be a whole number.
        sample_rate: audio samples per second; ``duration * sample_rate`` must be whole.

    Returns:
        ``frames`` uint8 ``[duration * fps, height, width, 3]`` (RGB) and ``waveform`` float32
        ``[duration * sample_rate]`` in [-1, 1].
    """
    if scene.family not in FAMILIES:
        raise ValueError(f"{scene.id}: unknown scene family {scene.family!r}")
    if scene.duration < 1.0:
        # Every family then has at least one sound event (impact, flash, tick) in the clip.
        raise ValueError(f"{scene.id}: duration must be at least 1 s, got {scene.duration}")
    height, width = size
    if height < 16 or width < 16:
        raise ValueError(f"size must be at least 16x16 pixels, got {size}")
    n_frames = _whole(scene.duration * fps, f"{scene.id}: duration * fps")
    n_samples = _whole(scene.duration * sample_rate, f"{scene.id}: duration * sample_rate")
    canvas = _Canvas(
        height=height,
        width=width,
        duration=scene.duration,
        frame_times=np.arange(n_frames) / fps,
        audio_times=np.arange(n_samples) / sample_rate,
        sample_rate=sample_rate,
        yy=np.arange(height, dtype=np.float32)[:, None] + 0.5,
        xx=np.arange(width, dtype=np.float32)[None, :] + 0.5,
    )
    colour = _draw_colour(scene.colour, rng)
    frames, audio = _RENDERERS[scene.family](scene, rng, canvas, colour)
    frames_u8 = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    # Loudness varies between draws, as it would between real recordings of one caption.
    peak = rng.uniform(0.5, 0.85)
    waveform = (audio * (peak / np.max(np.abs(audio)))).astype(np.float32)
    return frames_u8, waveform


def _draw_colour(name: str, rng: np.random.Generator) -> np.ndarray:
    # Brightness varies more than hue, so a white stays white rather than turning cream.
    base = np.asarray(COLOURS[name], dtype=np.float32) * rng.uniform(0.8, 1.08)
    return np.clip(base + rng.uniform(-10, 10, 3), 0, 255).astype(np.float32)


def _background(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """A dark, slightly tinted vertical gradient, [h, w, 3] float32."""
    base = rng.uniform(12, 40) + rng.uniform(-6, 6, 3)
    ramp = rng.uniform(6, 24)
    rows = base[None, :] + ramp * (canvas.yy / canvas.height)  # [h, 3]
    return np.broadcast_to(rows[:, None, :], (canvas.height, canvas.width, 3)).astype(np.float32)


def _per_frame(value: float | np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float32), (n,))[:, None, None]


def _shape_alpha(
    shape: str,
    canvas: _Canvas,
    cx: float | np.ndarray,
    cy: float | np.ndarray,
    radius: float | np.ndarray,
    angle: float | np.ndarray = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased coverage [t, h, w] of a shape per frame, and a shading factor.

    Shapes are signed distances (negative inside) in the shape's own rotated frame; one pixel of
    soft edge turns the distance into coverage. ``radius`` is the circumradius (the length for
    ``bar``); ``angle`` turns the shape clockwise on screen, in radians.
    """
    n = len(canvas.frame_times)
    cx, cy, radius, angle = (_per_frame(v, n) for v in (cx, cy, radius, angle))
    dx = canvas.xx[None] - cx
    dy = canvas.yy[None] - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    shade = np.ones_like(u)
    if shape == "ball":
        dist = np.hypot(u, v) - radius
        # Lit from the top left, so a ball reads as a ball rather than a disc.
        shade = np.clip(1.1 - 0.25 * ((dx + dy) / (1.42 * radius) + 1.0), 0.55, 1.1)
    elif shape in ("square", "block"):
        dist = np.maximum(np.abs(u), np.abs(v)) - 0.8 * radius
    elif shape == "triangle":
        # Pointing up (screen y grows downwards); inradius is half the circumradius.
        dist = np.maximum(v, np.maximum(0.866 * u - 0.5 * v, -0.866 * u - 0.5 * v)) - 0.5 * radius
    elif shape == "star":
        dist = _star_distance(u, v, radius)
    elif shape == "bar":
        half_thick = np.maximum(1.5, 0.07 * radius)
        hand = np.maximum(np.abs(u - 0.5 * radius) - 0.5 * radius, np.abs(v) - half_thick)
        hub = np.hypot(u, v) - 2.0 * half_thick
        dist = np.minimum(hand, hub)
    else:
        raise ValueError(f"unknown demo shape {shape!r}")
    return np.clip(0.5 - dist, 0.0, 1.0).astype(np.float32), shade.astype(np.float32)


def _star_distance(u: np.ndarray, v: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Signed distance to the edges of a five-pointed star with one point up."""
    inner = 0.45
    rho = np.hypot(u, v)
    # Angle from the upward point, folded into one half-sector [0, 36 degrees].
    theta = np.arctan2(u, -v)
    sector = np.pi / 5
    phi = np.abs(np.mod(theta + sector, 2 * sector) - sector)
    # Edge from the outer point (1, 0) to the inner corner at 36 degrees, in unit-radius polar.
    ax, ay = 1.0, 0.0
    bx, by = inner * np.cos(sector), inner * np.sin(sector)
    nx, ny = -(by - ay), bx - ax
    norm = np.hypot(nx, ny)
    nx, ny = nx / norm, ny / norm
    offset = nx * ax + ny * ay
    # Perpendicular distance to that edge's line, sign chosen so the centre is inside.
    return (rho * (nx * np.cos(phi) + ny * np.sin(phi)) - offset * radius) * np.sign(offset)


def _composite(
    background: np.ndarray, colour: np.ndarray, alpha: np.ndarray, shade: np.ndarray
) -> np.ndarray:
    """Paint a coloured object of coverage ``alpha`` [t, h, w] over a background.

    ``background`` is [h, w, 3], or [t, h, w, 3] when it changes; returns [t, h, w, 3] float32.
    """
    frames = np.empty((*alpha.shape, 3), dtype=np.float32)
    # One channel at a time keeps the temporaries at a third of the frame size.
    for c in range(3):
        under = background[..., c]
        frames[..., c] = under + alpha * (colour[c] * shade - under)
    return frames


def _events(
    times: np.ndarray, amplitudes: np.ndarray, template: np.ndarray, canvas: _Canvas
) -> np.ndarray:
    """Place a sound at each event time: an impulse train convolved with the template."""
    n = len(canvas.audio_times)
    impulses = np.zeros(n)
    at = np.rint(np.asarray(times) * canvas.sample_rate).astype(int)
    keep = (at >= 0) & (at < n)
    np.add.at(impulses, at[keep], np.asarray(amplitudes, dtype=np.float64)[keep])
    return signal.fftconvolve(impulses, template)[:n]


def _damped_sine(
    canvas: _Canvas, freq: float, decay: float, length: float, rng: np.random.Generator
) -> np.ndarray:
    t = np.arange(round(length * canvas.sample_rate)) / canvas.sample_rate
    return np.exp(-t / decay) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))


def _bounce(
    scene: SceneSpec, rng: np.random.Generator, canvas: _Canvas, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = canvas.height, canvas.width
    floor_y = h * rng.uniform(0.78, 0.88)
    radius = h * rng.uniform(0.09, 0.13)
    rest_y = floor_y - radius
    drop = (rest_y - radius - 2.0) * rng.uniform(0.55, 0.95)
    t_fall = rng.uniform(0.3, 0.55)
    gravity = 2 * drop / t_fall**2
    restitution = rng.uniform(0.6, 0.8)
    # Impact k comes at speed v0 * e**k and sends the object up for 2 * t_fall * e**(k + 1)
    # seconds, to height drop * e**(2k + 2). Bounces under half a pixel are dropped: at rest.
    n_impacts = 1 + int(np.floor(np.log(0.5 / drop) / (2 * np.log(restitution))))
    k = np.arange(n_impacts)
    flights = 2 * t_fall * restitution ** (k + 1)
    impacts = t_fall + np.concatenate([[0.0], np.cumsum(flights[:-1])])
    up_speed = gravity * t_fall * restitution ** (k + 1)
    up_speed[-1] = 0.0

    t = canvas.frame_times
    last = np.searchsorted(impacts, t, side="right") - 1
    since = t - impacts[np.maximum(last, 0)]
    flying = np.maximum(up_speed[np.maximum(last, 0)] * since - 0.5 * gravity * since**2, 0.0)
    height = np.where(last < 0, drop - 0.5 * gravity * t**2, flying)
    cy = rest_y - height
    if scene.motion == "in place":
        cx = np.full_like(t, w * rng.uniform(0.3, 0.7))
    else:
        start, end = w * rng.uniform(0.12, 0.25), w * rng.uniform(0.75, 0.88)
        if scene.motion == "leftward":
            start, end = w - start, w - end
        cx = start + (end - start) * t / canvas.duration

    background = _background(canvas, rng)
    floor = rng.uniform(85, 125) + rng.uniform(-8, 8, 3)
    floor_alpha = np.clip(canvas.yy - floor_y + 0.5, 0.0, 1.0)[..., None]  # [h, 1, 1]
    background = background + floor_alpha * (floor - background)
    alpha, shade = _shape_alpha(scene.shape, canvas, cx, cy, radius)
    frames = _composite(background, colour, alpha, shade)

    click = _damped_sine(canvas, rng.uniform(1500, 3200), rng.uniform(0.004, 0.009), 0.06, rng)
    thud = _damped_sine(canvas, rng.uniform(110, 220), rng.uniform(0.015, 0.03), 0.12, rng)
    template = 0.6 * thud
    template[: len(click)] += click
    audio = _events(impacts, restitution**k, template, canvas)
    return frames, audio


def _pulse(
    scene: SceneSpec, rng: np.random.Generator, canvas: _Canvas, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = canvas.height, canvas.width
    rate = rng.uniform(0.6, 1.0) if scene.motion == "slow" else rng.uniform(1.8, 2.6)
    phase = rng.uniform(0, 2 * np.pi)
    depth = rng.uniform(0.25, 0.4)
    radius = h * rng.uniform(0.16, 0.22)

    def swell(t: np.ndarray) -> np.ndarray:
        return np.sin(2 * np.pi * rate * t + phase)

    alpha, shade = _shape_alpha(
        scene.shape,
        canvas,
        w * rng.uniform(0.4, 0.6),
        h * rng.uniform(0.4, 0.6),
        radius * (1 + depth * swell(canvas.frame_times)),
        rng.uniform(-0.4, 0.4),
    )
    frames = _composite(_background(canvas, rng), colour, alpha, shade)

    t = canvas.audio_times
    f0 = rng.uniform(110, 260)
    tone = sum(
        gain * np.sin(2 * np.pi * harmonic * f0 * t + rng.uniform(0, 2 * np.pi))
        for harmonic, gain in ((1, 1.0), (2, 0.5), (3, 0.25))
    )
    loudness = 0.15 + 0.85 * ((1 + swell(t)) / 2) ** 1.5
    return frames, tone * loudness


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _glide(
    scene: SceneSpec, rng: np.random.Generator, canvas: _Canvas, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = canvas.height, canvas.width
    radius = h * rng.uniform(0.09, 0.13)
    top, bottom = radius + 4, h - radius - 4
    if scene.motion == "bob":
        rate, phase = rng.uniform(0.5, 1.1), rng.uniform(0, 2 * np.pi)
        middle, reach = h / 2, rng.uniform(0.8, 1.0) * (bottom - top) / 2

        def y_at(t: np.ndarray) -> np.ndarray:
            return middle + reach * np.sin(2 * np.pi * rate * t + phase)

    else:
        start, end = bottom, top
        if scene.motion == "sink":
            start, end = top, bottom
        t0 = canvas.duration * rng.uniform(0.0, 0.15)
        t1 = canvas.duration * rng.uniform(0.85, 1.0)

        def y_at(t: np.ndarray) -> np.ndarray:
            return start + (end - start) * _smoothstep((t - t0) / (t1 - t0))

    x0, x1 = w * rng.uniform(0.25, 0.75, 2)
    tilt = 0.0 if scene.shape == "triangle" else rng.uniform(-0.3, 0.3)
    t = canvas.frame_times
    alpha, shade = _shape_alpha(
        scene.shape, canvas, x0 + (x1 - x0) * t / canvas.duration, y_at(t), radius, tilt
    )
    frames = _composite(_background(canvas, rng), colour, alpha, shade)

    t = canvas.audio_times
    lift = (bottom - y_at(t)) / (bottom - top)  # 0 at the bottom, 1 at the top
    pitch = rng.uniform(200, 300) * 2.0 ** (rng.uniform(1.2, 2.0) * lift)
    phase_track = 2 * np.pi * np.cumsum(pitch) / canvas.sample_rate
    fade = np.minimum(1.0, np.minimum(t, canvas.duration - t) / 0.03)
    return frames, (np.sin(phase_track) + 0.3 * np.sin(2 * phase_track)) * fade


def _flash(
    scene: SceneSpec, rng: np.random.Generator, canvas: _Canvas, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = canvas.height, canvas.width
    # Flashes at least 0.35 s apart, the first by 0.4 s and the second by 1.2 s: two or more in
    # any clip of 2 s or longer.
    gaps = rng.uniform(0.35, 0.8, int(canvas.duration / 0.35) + 1)
    times = rng.uniform(0.1, 0.4) + np.concatenate([[0.0], np.cumsum(gaps)])
    times = times[times < canvas.duration - 0.2]
    radius = h * rng.uniform(0.14, 0.2)
    margin = radius + 3
    if scene.motion == "around":
        xs = rng.uniform(margin, w - margin, len(times))
        ys = rng.uniform(margin, h - margin, len(times))
    else:
        xs = np.full(len(times), w * rng.uniform(0.4, 0.6))
        ys = np.full(len(times), h * rng.uniform(0.4, 0.6))
    angles = rng.uniform(-0.3, 0.3, len(times))
    fade_video = rng.uniform(0.12, 0.25)

    # Flashes are far apart compared with their decay, so only the latest one matters.
    t = canvas.frame_times
    last = np.searchsorted(times, t, side="right") - 1
    j = np.maximum(last, 0)
    glow = np.where(last < 0, 0.0, np.exp(-(t - times[j]) / fade_video)).astype(np.float32)
    alpha, shade = _shape_alpha(
        scene.shape, canvas, xs[j], ys[j], radius * (1 + 0.15 * glow), angles[j]
    )
    alpha = alpha * glow[:, None, None]
    # The whole screen lights up a little with each flash.
    background = _background(canvas, rng)[None] + (0.2 * glow[:, None, None, None]) * colour
    frames = _composite(background, colour, alpha, shade)

    t = canvas.audio_times
    last = np.searchsorted(times, t, side="right") - 1
    since = t - times[np.maximum(last, 0)]
    fade_audio = rng.uniform(0.04, 0.1)
    envelope = np.where(last < 0, 0.0, np.minimum(1.0, since / 0.002) * np.exp(-since / fade_audio))
    pole = rng.uniform(0.0, 0.7)
    hiss = signal.lfilter([1 - pole], [1, -pole], rng.standard_normal(len(t)))
    return frames, hiss * envelope


def _spin(
    scene: SceneSpec, rng: np.random.Generator, canvas: _Canvas, colour: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    h, w = canvas.height, canvas.width
    length = min(h, w) * rng.uniform(0.3, 0.4)
    cx, cy = w * rng.uniform(0.45, 0.55), h * rng.uniform(0.45, 0.55)
    turns = rng.uniform(0.5, 1.2)
    # With screen y pointing down, a growing angle turns clockwise.
    direction = 1.0 if scene.motion == "clockwise" else -1.0
    start = rng.uniform(0, 2 * np.pi)
    angle = start + direction * 2 * np.pi * turns * canvas.frame_times

    background = _background(canvas, rng)
    ring = np.abs(np.hypot(canvas.xx - cx, canvas.yy - cy) - (length + 5)) - 0.75
    dial = rng.uniform(60, 100)
    background = background + np.clip(0.5 - ring, 0, 1)[..., None] * (dial - background)
    alpha, shade = _shape_alpha("bar", canvas, cx, cy, length, angle)
    frames = _composite(background, colour, alpha, shade)

    # Ticks when the hand points along an axis: direction * angle crosses a multiple of pi/2.
    unwrapped = direction * start
    quarter = np.pi / 2
    first = np.floor(unwrapped / quarter) + 1
    k = first + np.arange(int(4 * turns * canvas.duration) + 2)
    times = (k * quarter - unwrapped) / (2 * np.pi * turns)
    tick = _damped_sine(canvas, rng.uniform(2500, 4500), rng.uniform(0.002, 0.005), 0.03, rng)
    body = _damped_sine(canvas, rng.uniform(600, 1200), rng.uniform(0.004, 0.01), 0.03, rng)
    audio = _events(times, np.ones(len(times)), tick + 0.4 * body, canvas)
    return frames, audio


_Renderer = Callable[
    [SceneSpec, np.random.Generator, _Canvas, np.ndarray], tuple[np.ndarray, np.ndarray]
]
_RENDERERS: dict[str, _Renderer] = {
    "bounce": _bounce,
    "pulse": _pulse,
    "glide": _glide,
    "flash": _flash,
    "spin": _spin,
}


# ---------------------------------------------------------------------------------------------
# Degradation


def blur_frames(frames: np.ndarray, sigma: float = DEGRADED_BLUR_SIGMA) -> np.ndarray:
    """Gaussian blur of each frame, edges repeated: uint8 [t, h, w, 3] in and out.

    Separable: one 1-D Gaussian (cut at 3 sigma) along the rows, then along the columns, by
    scipy.ndimage, which does it a few times faster than a loop over numpy taps.
    """
    out = frames.astype(np.float32)
    for axis in (1, 2):
        out = ndimage.gaussian_filter1d(out, sigma, axis=axis, mode="nearest", truncate=3.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def shuffle_frames(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames in a random order that is never the original one (for two or more frames)."""
    order = rng.permutation(len(frames))
    if len(frames) > 1 and np.array_equal(order, np.arange(len(frames))):
        order = np.roll(order, 1)
    return frames[order]


def audio_donors(families: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """Which clip lends its soundtrack to each clip: a derangement that crosses families.

    Clips are grouped by family in a random order and each takes the sound of the clip as many
    places further on as the largest family has members, so no clip keeps its own sound, and no
    clip gets a sound of its own family while no family holds more than half of the clips.

    Returns:
        ``donors`` with ``donors[i] != i``: clip ``i`` gets the sound of clip ``donors[i]``.
    """
    n = len(families)
    if n < 2:
        raise TavgbenchError(f"demo: swapping soundtracks needs at least 2 clips, got {n}")
    groups: dict[str, list[int]] = {}
    for index, family in enumerate(families):
        groups.setdefault(family, []).append(index)
    names = list(groups)
    order = np.concatenate([rng.permutation(groups[names[g]]) for g in rng.permutation(len(names))])
    shift = min(max(len(members) for members in groups.values()), n - 1)
    donors = np.empty(n, dtype=np.int64)
    donors[order] = order[(np.arange(n) + shift) % n]
    return donors


def fit_length(waveform: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop a waveform to ``n_samples``, or pad it by repeating it from its start."""
    return np.resize(waveform, n_samples)


# ---------------------------------------------------------------------------------------------
# Writing the demo split


def write_demo(
    out_dir: Path,
    *,
    n_clips: int = DEFAULT_N_CLIPS,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DemoLayout:
    """Write the demo split and its two example submissions, or reuse a complete one.

    Layout::

        out_dir/split.csv                       id,caption,video_caption,audio_caption,duration
        out_dir/reference/<id>.mp4              H.264 + AAC
        out_dir/submissions/faithful/<id>.mp4   same scenes, fresh draws
        out_dir/submissions/degraded/<id>.mp4   fresh draws, blurred, shuffled, sound swapped
        out_dir/demo.json                       stamp: version, seed, n_clips, split sha256

    Every file is written under a temporary name and renamed, and the stamp comes last, so a
    killed run never passes for a complete demo. When the stamp, the manifest and every clip of
    this version and seed are there, nothing is rewritten.

    Args:
        out_dir: folder to write; created if missing.
        n_clips: number of clips per set (at least 2; 16 to 32 give useful statistics).
        seed: non-negative integer fixing every clip.
        progress: called as ``progress(done, total)`` after each clip file is written.

    Returns:
        Where everything is, and whether it was generated now.
    """
    if n_clips < 2:
        raise TavgbenchError(
            f"demo: n_clips must be at least 2 (the degraded set swaps sounds), got {n_clips}"
        )
    specs = demo_specs(n_clips, seed)
    root = Path(out_dir)
    layout = DemoLayout(
        root=root,
        manifest=root / "split.csv",
        reference_dir=root / "reference",
        submission_dirs={name: root / "submissions" / name for name in SETS[1:]},
        stamp=root / "demo.json",
        ids=tuple(spec.id for spec in specs),
        generated=True,
    )
    manifest = _manifest_bytes(specs)
    stamp = {
        "version": DEMO_VERSION,
        "seed": int(seed),
        "n_clips": n_clips,
        "split_sha256": hashlib.sha256(manifest).hexdigest(),
    }
    if _is_complete(layout, stamp):
        return replace(layout, generated=False)

    for folder in (root, *layout.clip_dirs().values()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TavgbenchError(
                f"{folder}: cannot create the demo folder ({exc.strerror}); choose another one"
            ) from exc
    layout.stamp.unlink(missing_ok=True)
    for folder in (root, *layout.clip_dirs().values()):
        _remove_stale(folder, set(layout.ids))
    _replace_atomically(layout.manifest, lambda tmp: tmp.write_bytes(manifest))

    sets = {
        "reference": _drawn_clips(specs, seed, "reference"),
        "faithful": _drawn_clips(specs, seed, "faithful"),
        "degraded": _degraded_clips(specs, seed),
    }
    folders = layout.clip_dirs()
    done = 0
    for set_name, clips in sets.items():
        for index, frames, waveform in clips:
            # write_audible_video writes under a temporary name and renames, like the rest here.
            path = folders[set_name] / f"{specs[index].id}.mp4"
            write_audible_video(path, frames, DEFAULT_FPS, waveform, DEFAULT_SAMPLE_RATE)
            done += 1
            if progress is not None:
                progress(done, len(SETS) * n_clips)

    _replace_atomically(
        layout.stamp, lambda tmp: tmp.write_text(json.dumps(stamp, indent=2) + "\n")
    )
    return layout


def _drawn_clips(
    specs: Sequence[SceneSpec], seed: int, set_name: str
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, frames, waveform)`` of each clip of a set of plain draws, in order."""
    for index, spec in enumerate(specs):
        yield index, *generate_scene(spec, clip_rng(seed, set_name, index))


def _degraded_clips(
    specs: Sequence[SceneSpec], seed: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(index, frames, waveform)`` of each degraded clip, every scene rendered once.

    Walking each cycle of the donor permutation, a clip is ready as soon as its donor has been
    rendered, so only two clips' frames are held at a time; the cycle's last clip takes the
    sound of its first.
    """
    donors = audio_donors([spec.family for spec in specs], _stream_rng(seed, "degraded-audio"))

    def render(index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = clip_rng(seed, "degraded", index)
        frames, waveform = generate_scene(specs[index], rng)
        return shuffle_frames(blur_frames(frames), rng), waveform

    done = np.zeros(len(specs), dtype=bool)
    for start in range(len(specs)):
        if done[start]:
            continue
        frames, start_sound = render(start)
        clip = start
        while True:
            donor = int(donors[clip])
            if donor == start:
                donor_frames, sound = None, start_sound
            else:
                donor_frames, sound = render(donor)
            n_samples = round(specs[clip].duration * DEFAULT_SAMPLE_RATE)
            yield clip, frames, fit_length(sound, n_samples)
            done[clip] = True
            if donor_frames is None:
                break
            clip, frames = donor, donor_frames


def _manifest_bytes(specs: Sequence[SceneSpec]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for spec in specs:
        writer.writerow(
            [spec.id, spec.caption, spec.video_caption, spec.audio_caption, f"{spec.duration:g}"]
        )
    return text.getvalue().encode("utf-8")


def _is_complete(layout: DemoLayout, stamp: dict[str, object]) -> bool:
    try:
        found = json.loads(layout.stamp.read_text())
        manifest = layout.manifest.read_bytes()
    except (OSError, ValueError):
        return False
    return (
        found == stamp
        and hashlib.sha256(manifest).hexdigest() == stamp["split_sha256"]
        and all(
            (folder / f"{clip_id}.mp4").is_file()
            for folder in layout.clip_dirs().values()
            for clip_id in layout.ids
        )
    )


def _remove_stale(folder: Path, ids: set[str]) -> None:
    """Delete demo clips not in this split and temporary files left by a killed run."""
    for path in folder.iterdir():
        stale_clip = _CLIP_FILE.fullmatch(path.name) and path.stem not in ids
        if (stale_clip or _TEMP_FILE.fullmatch(path.name)) and path.is_file():
            path.unlink()


def _replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
