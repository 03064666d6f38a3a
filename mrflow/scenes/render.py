"""Antialiased rendering of scenes at any resolution, with signed distance fields.

Each shape is a signed distance function ``d`` (negative inside) in image-side units; the coverage of a
pixel of side ``px`` is ``clip(0.5 - d / px, 0, 1)``, a one-sample box-filter estimate that needs no
supersampling and gives the same geometry at every resolution. Textures that would alias at a given
resolution fade to their mean, so a 64 px render is close to a downsampled 256 px render.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mrflow.scenes.scene import Background, Scene, SceneObject, sample_scenes
from mrflow.scenes.vocab import COLOURS, TEXTURE_SHADE

RING_INNER = 0.55  # inner radius of a ring, as a fraction of its outer radius
STAR_INNER = 0.42  # inner vertex radius of a five-pointed star
CROSS_ARM = 0.35  # arm half-width of a cross, as a fraction of its arm half-length
DOT_RADIUS = 0.3  # dot radius as a fraction of the dot period
# Grain is white noise whose std is ``grain`` at this size and scales with the pixel count per side, so a
# render downsampled by k has the grain of a render made at 1/k the size (averaging k² pixels divides the
# std by k): grain is detail that exists only at high resolution, as in a real photograph.
GRAIN_REFERENCE_SIZE = 256


def _polygon_sdf(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Signed distance to a closed polygon ``vertices`` (M, 2); inside by the even-odd rule."""
    best = np.full(u.shape, np.inf, dtype=np.float32)
    inside = np.zeros(u.shape, dtype=bool)
    for (ax, ay), (bx, by) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        ex, ey = bx - ax, by - ay
        wx, wy = u - ax, v - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        best = np.minimum(best, (wx - ex * t) ** 2 + (wy - ey * t) ** 2)
        crosses = (v >= ay) != (v >= by)
        inside ^= crosses & (u < ax + (v - ay) * ex / np.where(ey == 0, 1.0, ey))
    return np.where(inside, -1.0, 1.0).astype(np.float32) * np.sqrt(best)


def _box_sdf(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    qu, qv = np.abs(u) - half_u, np.abs(v) - half_v
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    return outside + np.minimum(np.maximum(qu, qv), 0.0)


def _regular_vertices(radii: list[float]) -> np.ndarray:
    """Vertices at evenly spaced angles, the first pointing up (negative ``v``)."""
    angles = -math.pi / 2 + 2 * math.pi * np.arange(len(radii)) / len(radii)
    return np.stack([np.asarray(radii) * np.cos(angles), np.asarray(radii) * np.sin(angles)], axis=1)


def shape_sdf(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (image sides, negative inside) of ``shape`` with circumradius ``r`` at the origin.

    Args:
        shape: a name from :data:`mrflow.scenes.vocab.SHAPES`.
        u, v: local coordinates (any equal shapes), in image sides.
        r: circumradius, in image sides.
    """
    if shape == "circle":
        return np.hypot(u, v) - r
    if shape == "ring":
        half_width = r * (1 - RING_INNER) / 2
        return np.abs(np.hypot(u, v) - (r - half_width)) - half_width
    if shape == "square":
        return _box_sdf(u, v, r / math.sqrt(2), r / math.sqrt(2))
    if shape == "cross":
        arm = r / math.hypot(1.0, CROSS_ARM)
        return np.minimum(_box_sdf(u, v, arm, arm * CROSS_ARM), _box_sdf(u, v, arm * CROSS_ARM, arm))
    if shape == "triangle":
        return _polygon_sdf(u, v, _regular_vertices([r] * 3))
    if shape == "star":
        return _polygon_sdf(u, v, _regular_vertices([r, r * STAR_INNER] * 5))
    raise ValueError(f"unknown shape {shape!r}")


def coverage(distance: np.ndarray, px: float) -> np.ndarray:
    """Pixel coverage in [0, 1] of the region ``distance < 0`` for pixels of side ``px``."""
    return np.clip(0.5 - distance / px, 0.0, 1.0)


def _fade(period: float, px: float) -> float:
    """1 for patterns of period ≥ 4 px, 0 below 2 px (they would alias), linear in between."""
    return float(np.clip((period / px - 2.0) / 2.0, 0.0, 1.0))


def _square_wave_integral(u: np.ndarray, period: float) -> np.ndarray:
    """∫₀ᵘ of the 50 % square wave (1 on the first half of each period), in image sides."""
    cycles = u / period
    whole = np.floor(cycles)
    return period * (0.5 * whole + np.minimum(cycles - whole, 0.5))


def _stripes(u: np.ndarray, period: float, px: float) -> np.ndarray:
    """50 % square-wave stripes across ``u``, box-filtered over a pixel exactly, in [0, 1].

    Exact pixel averages compose: averaging k × k pixels of a render gives the render at 1/k the size.
    """
    return (_square_wave_integral(u + px / 2, period) - _square_wave_integral(u - px / 2, period)) / px


def _texture(obj: SceneObject, u: np.ndarray, v: np.ndarray, sdf: np.ndarray, px: float) -> np.ndarray:
    """Fraction in [0, 1] of each pixel painted in the darker texture shade."""
    if obj.texture == "stripes":
        return _stripes(u, obj.period, px)
    if obj.texture == "dots":
        du = (u / obj.period) % 1.0 - 0.5
        dv = (v / obj.period) % 1.0 - 0.5
        dots = coverage((np.hypot(du, dv) - DOT_RADIUS) * obj.period, px)
        mean = math.pi * DOT_RADIUS**2
        return mean + _fade(obj.period, px) * (dots - mean)
    if obj.texture == "outline":
        return coverage(-(sdf + 0.18 * obj.radius), px)
    return np.zeros_like(u)


def _grid(size: int, lo: int, hi: int) -> np.ndarray:
    """Pixel-centre coordinates in image sides for pixel indices ``lo:hi``."""
    return ((np.arange(lo, hi, dtype=np.float32) + 0.5) / size).astype(np.float32)


def _draw_object(image: np.ndarray, obj: SceneObject) -> None:
    """Composite ``obj`` over ``image`` (H, W, 3) float32 in [0, 1], in place."""
    size = image.shape[0]
    px = 1.0 / size
    reach = obj.radius + 2 * px
    x0, x1 = max(0, int((obj.x - reach) * size)), min(size, int(math.ceil((obj.x + reach) * size)))
    y0, y1 = max(0, int((obj.y - reach) * size)), min(size, int(math.ceil((obj.y + reach) * size)))
    dx = _grid(size, x0, x1)[None, :] - obj.x
    dy = _grid(size, y0, y1)[:, None] - obj.y
    cos, sin = math.cos(obj.rotation), math.sin(obj.rotation)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    sdf = shape_sdf(obj.shape, u, v, obj.radius)
    alpha = coverage(sdf, px)[..., None]
    base = np.asarray(COLOURS[obj.colour], dtype=np.float32) / 255
    shade = _texture(obj, u, v, sdf, px)[..., None]
    colour = base * (1.0 - shade * (1.0 - TEXTURE_SHADE))
    region = image[y0:y1, x0:x1]
    region += alpha * (colour - region)


def _background(background: Background, size: int) -> np.ndarray:
    """The background (H, W, 3) float32 in [0, 1], before grain."""
    xs = _grid(size, 0, size)[None, :] - 0.5
    ys = _grid(size, 0, size)[:, None] - 0.5
    cos, sin = math.cos(background.angle), math.sin(background.angle)
    t = 0.5 + (xs * cos + ys * sin) / (abs(cos) + abs(sin))
    start = np.asarray(background.start, dtype=np.float32)
    end = np.asarray(background.end, dtype=np.float32)
    image: np.ndarray = start + t[..., None] * (end - start)
    if background.pattern != "none":
        diagonal_u = (xs + ys) / math.sqrt(2)
        diagonal_v = (xs - ys) / math.sqrt(2)
        wave = 2 * _stripes(diagonal_u, background.pattern_period, 1.0 / size) - 1
        if background.pattern == "checks":
            wave = wave * (2 * _stripes(diagonal_v, background.pattern_period, 1.0 / size) - 1)
        image = image + background.pattern_contrast * wave[..., None]
    return image.astype(np.float32)


def render_float(scene: Scene, size: int) -> np.ndarray:
    """Render ``scene`` as a ``(size, size, 3)`` float32 array in [0, 1] (not quantised)."""
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer ≥ 8, got {size!r}")
    image = _background(scene.background, size)
    for obj in scene.objects:
        _draw_object(image, obj)
    if scene.background.grain > 0:
        noise = np.random.default_rng(scene.background.noise_seed).standard_normal((size, size), np.float32)
        image += (scene.background.grain * size / GRAIN_REFERENCE_SIZE * noise)[..., None]
    return np.clip(image, 0.0, 1.0, out=image)


def render(scene: Scene, size: int) -> np.ndarray:
    """Render ``scene`` at ``size`` × ``size``.

    Returns:
        ``(size, size, 3)`` uint8 RGB.
    """
    return (render_float(scene, size) * 255 + 0.5).astype(np.uint8)


def render_scenes(scenes: list[Scene], size: int) -> torch.Tensor:
    """Render ``scenes`` at one size: ``(N, 3, size, size)`` float32 in [0, 1] (``render`` / 255)."""
    if not scenes:
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    stack = np.stack([render(scene, size) for scene in scenes])
    return torch.from_numpy(stack).permute(0, 3, 1, 2).float().div_(255.0).contiguous()


def make_batch(seed: int, count: int, sizes: tuple[int, ...]) -> tuple[dict[int, torch.Tensor], list[str]]:
    """The scenes ``sample_scenes(seed, count)`` rendered at every size in ``sizes``.

    Returns:
        ``({size: (count, 3, size, size) float32 in [0, 1]}, captions)``.
    """
    if not sizes:
        raise ValueError("sizes must name at least one size")
    scenes = sample_scenes(seed, count)
    return {size: render_scenes(scenes, size) for size in sizes}, [scene.caption for scene in scenes]
