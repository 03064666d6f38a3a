"""The scene vocabulary: shapes, named colours, sizes, positions, relations, textures, backgrounds.

Object colours are saturated and spread around the hue circle; backgrounds are low-saturation tints,
so colour alone separates objects from the background (see :mod:`mrflow.scenes.detect`).
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")

# sRGB, 0–255. HSV hues are at least 25° apart (red 358, orange 28, yellow 55, green 132, cyan 187,
# blue 226, purple 274, pink 324) and chroma (max − min) ≥ 0.5; textures use darker shades of the same
# colour, which keep the hue.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40),
    "orange": (240, 120, 15),
    "yellow": (240, 220, 20),
    "green": (40, 160, 65),
    "cyan": (25, 185, 205),
    "blue": (40, 80, 215),
    "purple": (135, 55, 195),
    "pink": (240, 105, 185),
}

SIZES: tuple[str, ...] = ("small", "large")
# circumradius ranges in image sides; the gap between them lets the detector tell the sizes apart
SIZE_RADII: dict[str, tuple[float, float]] = {"small": (0.09, 0.12), "large": (0.16, 0.2)}

POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
TEXTURES: tuple[str, ...] = ("solid", "stripes", "dots", "outline")
TEXTURE_SHADE = 0.62  # texture colour = object colour × this (same hue, darker)

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (238, 238, 236),
    "light grey": (212, 214, 216),
    "cream": (236, 229, 214),
    "cool grey": (200, 208, 218),
    "mid grey": (140, 140, 142),
    "slate": (70, 76, 86),
    "charcoal": (38, 38, 42),
}
BG_PATTERNS: tuple[str, ...] = ("none", "lines", "checks")
