"""Scene descriptions: frozen vector scenes of simple objects, sampled deterministically from a seed.

Coordinates are fractions of the (square) image side: ``x`` grows to the right, ``y`` grows downwards,
both in [0, 1]. Sizes are circumradii in the same unit, so one scene renders identically at any
resolution. Every scene carries the structured :class:`Prompt` it depicts and one caption phrasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mrflow.scenes.captions import caption_for
from mrflow.scenes.prompt import ObjectSpec, Prompt, check_choice, sample_prompt
from mrflow.scenes.vocab import BACKGROUNDS, BG_PATTERNS, COLOURS, SHAPES, SIZE_RADII, SIZES, TEXTURES

_MARGIN = 0.02  # gap kept between an object and the image border, and between objects


@dataclass(frozen=True)
class SceneObject:
    """One drawn object.

    Attributes:
        shape, colour, size: names from the vocabulary (``size`` is the class of ``radius``).
        x, y: centre in [0, 1] (``y`` downwards).
        radius: circumradius in image sides, inside the range of its size class.
        rotation: radians, counter-clockwise on screen.
        texture: fill detail, one of ``solid``, ``stripes``, ``dots``, ``outline``.
        period: stripe/dot period in image sides (also the outline width scale).
    """

    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float
    rotation: float
    texture: str
    period: float

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        check_choice("size", self.size, SIZES)
        check_choice("texture", self.texture, TEXTURES)
        low, high = SIZE_RADII[self.size]
        if not low - 1e-9 <= self.radius <= high + 1e-9:
            raise ValueError(f"radius {self.radius!r} is outside [{low}, {high}] for size {self.size!r}")
        for name, value in (("x", self.x), ("y", self.y)):
            if not self.radius <= value <= 1 - self.radius:
                raise ValueError(f"{name} = {value!r} puts the object (radius {self.radius}) outside the image")
        if not 0 < self.period < 0.5:
            raise ValueError(f"period must be in (0, 0.5), got {self.period!r}")


@dataclass(frozen=True)
class Background:
    """A low-saturation background: plain or a linear gradient, with an optional faint pattern.

    Attributes:
        start, end: RGB in [0, 1] at the two ends of the gradient (equal for a plain background).
        angle: gradient direction, radians.
        pattern: ``none``, ``lines`` or ``checks`` (luminance only, ±``pattern_contrast``).
        pattern_period: pattern period in image sides.
        pattern_contrast: pattern amplitude in [0, 0.1].
        grain: standard deviation in [0, 0.05] of luminance grain at 256 px, proportional to the size
            (drawn per render from ``noise_seed``; see :mod:`mrflow.scenes.render`).
        noise_seed: seed of the grain.
    """

    start: tuple[float, float, float]
    end: tuple[float, float, float]
    angle: float
    pattern: str
    pattern_period: float
    pattern_contrast: float
    grain: float
    noise_seed: int

    def __post_init__(self) -> None:
        for name, colour in (("start", self.start), ("end", self.end)):
            if len(colour) != 3 or not all(0.0 <= c <= 1.0 for c in colour):
                raise ValueError(f"{name} must be 3 values in [0, 1], got {colour!r}")
        check_choice("pattern", self.pattern, BG_PATTERNS)
        if not 0 < self.pattern_period < 0.5:
            raise ValueError(f"pattern_period must be in (0, 0.5), got {self.pattern_period!r}")
        if not 0 <= self.pattern_contrast <= 0.1:
            raise ValueError(f"pattern_contrast must be in [0, 0.1], got {self.pattern_contrast!r}")
        if not 0 <= self.grain <= 0.05:
            raise ValueError(f"grain must be in [0, 0.05], got {self.grain!r}")


@dataclass(frozen=True)
class Scene:
    """A captioned vector scene: what :func:`mrflow.scenes.render` draws at any size."""

    prompt: Prompt
    caption: str
    objects: tuple[SceneObject, ...]
    background: Background

    def __post_init__(self) -> None:
        expected = 2 if self.prompt.kind == "relation" else self.prompt.count
        if len(self.objects) != expected:
            raise ValueError(f"a {self.prompt.kind!r} scene needs {expected} objects, got {len(self.objects)}")
        if not self.caption:
            raise ValueError("caption must not be empty")


def _radius(rng: np.random.Generator, size: str, shrink: float = 0.0) -> float:
    low, high = SIZE_RADII[size]
    return float(rng.uniform(low, high - shrink * (high - low)))


def _make_object(rng: np.random.Generator, spec: ObjectSpec, size: str, x: float, y: float, r: float) -> SceneObject:
    return SceneObject(
        shape=spec.shape,
        colour=spec.colour,
        size=size,
        x=x,
        y=y,
        radius=r,
        rotation=float(rng.uniform(0, 2 * math.pi)),
        texture=str(rng.choice(TEXTURES)),
        period=float(rng.uniform(0.025, 0.045)),
    )


def _position_box(position: str | None, r: float) -> tuple[float, float, float, float]:
    """The (x0, x1, y0, y1) range for the centre of an object of radius ``r`` at ``position``."""
    lo, hi = r + _MARGIN, 1 - r - _MARGIN
    boxes = {
        None: (lo, hi, lo, hi),
        "left": (lo, max(lo, 0.33), 0.3, 0.7),
        "right": (min(hi, 0.67), hi, 0.3, 0.7),
        "top": (0.3, 0.7, lo, max(lo, 0.33)),
        "bottom": (0.3, 0.7, min(hi, 0.67), hi),
        "center": (0.45, 0.55, 0.45, 0.55),
    }
    return boxes[position]


def _place_single(rng: np.random.Generator, prompt: Prompt) -> tuple[SceneObject, ...]:
    size = prompt.subject.size or str(rng.choice(SIZES))
    r = _radius(rng, size)
    x0, x1, y0, y1 = _position_box(prompt.position, r)
    return (_make_object(rng, prompt.subject, size, float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), r),)


def _separated(points: list[tuple[float, float, float]]) -> bool:
    for i, (xi, yi, ri) in enumerate(points):
        for xj, yj, rj in points[i + 1 :]:
            if math.hypot(xi - xj, yi - yj) < ri + rj + 2 * _MARGIN:
                return False
    return True


def _place_count(rng: np.random.Generator, prompt: Prompt) -> tuple[SceneObject, ...]:
    size = prompt.subject.size or str(rng.choice(SIZES))
    for attempt in range(400):
        r = _radius(rng, size, shrink=min(1.0, attempt / 100))
        lo, hi = r + _MARGIN, 1 - r - _MARGIN
        points = [(float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)), r) for _ in range(prompt.count)]
        if _separated(points):
            return tuple(_make_object(rng, prompt.subject, size, x, y, r) for x, y, r in points)
    raise RuntimeError(f"could not place {prompt.count} {size} objects")  # unreachable with SIZE_RADII


def _place_relation(rng: np.random.Generator, prompt: Prompt) -> tuple[SceneObject, ...]:
    assert prompt.reference is not None and prompt.relation is not None
    sizes = [spec.size or str(rng.choice(SIZES)) for spec in (prompt.subject, prompt.reference)]
    # subject at a clearly smaller (left of / above) or larger coordinate along the relation's axis
    axis = 0 if prompt.relation in ("left of", "right of") else 1
    sign = -1.0 if prompt.relation in ("left of", "above") else 1.0
    for attempt in range(400):
        radii = [_radius(rng, size, shrink=min(1.0, attempt / 100)) for size in sizes]
        centres = []
        for r in radii:
            lo, hi = r + _MARGIN, 1 - r - _MARGIN
            centres.append([float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))])
        along = sign * (centres[0][axis] - centres[1][axis])
        across = abs(centres[0][1 - axis] - centres[1][1 - axis])
        points = [(c[0], c[1], r) for c, r in zip(centres, radii, strict=True)]
        if along >= 0.3 and across <= 0.15 and _separated(points):
            specs = (prompt.subject, prompt.reference)
            return tuple(
                _make_object(rng, spec, size, x, y, r)
                for spec, size, (x, y, r) in zip(specs, sizes, points, strict=True)
            )
    raise RuntimeError(f"could not place a {prompt.relation!r} pair")  # unreachable with SIZE_RADII


def _rgb(colour: np.ndarray) -> tuple[float, float, float]:
    return float(colour[0]), float(colour[1]), float(colour[2])


def _sample_background(rng: np.random.Generator) -> Background:
    names = list(BACKGROUNDS)
    start = np.asarray(BACKGROUNDS[names[int(rng.integers(len(names)))]], dtype=float) / 255
    if rng.random() < 0.5:  # gradient towards a lighter or darker version of the same tint
        end = np.clip(start + rng.uniform(-0.25, 0.25), 0, 1)
    else:
        end = start
    return Background(
        start=_rgb(start),
        end=_rgb(end),
        angle=float(rng.uniform(0, 2 * math.pi)),
        pattern=str(rng.choice(BG_PATTERNS)),
        pattern_period=float(rng.uniform(0.02, 0.05)),
        pattern_contrast=float(rng.uniform(0.015, 0.04)),
        grain=float(rng.uniform(0.0, 0.02)),
        noise_seed=int(rng.integers(2**31)),
    )


def layout_scene(prompt: Prompt, rng: np.random.Generator, caption: str | None = None) -> Scene:
    """A scene depicting ``prompt``: layout, textures and background drawn from ``rng``.

    Args:
        prompt: what to draw.
        rng: the source of every random choice.
        caption: the caption to attach; ``None`` draws a phrasing of ``prompt`` from ``rng`` first.
    """
    if caption is None:
        caption = caption_for(prompt, rng)
    placers = {"single": _place_single, "count": _place_count, "relation": _place_relation}
    objects = placers[prompt.kind](rng, prompt)
    return Scene(prompt=prompt, caption=caption, objects=objects, background=_sample_background(rng))


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draw one scene (prompt, caption phrasing, layout, textures, background) from ``rng``."""
    return layout_scene(sample_prompt(rng), rng)


def sample_scenes(seed: int, count: int) -> list[Scene]:
    """``count`` scenes from ``seed``; scene ``i`` depends only on ``(seed, i)``, so prefixes agree.

    Raises:
        ValueError: if ``seed`` is negative or ``count`` is negative.
    """
    if seed < 0 or count < 0:
        raise ValueError(f"seed and count must be non-negative, got seed={seed!r}, count={count!r}")
    return [sample_scene(np.random.default_rng([seed, index])) for index in range(count)]
