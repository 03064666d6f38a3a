"""A deterministic detector of the scene vocabulary, and attribute scoring of prompts against images.

Pipeline, all numpy/scipy:

1. **Background model**: a plane per RGB channel fitted by least squares to the low-chroma pixels of
   the image border (plain and gradient backgrounds are planes).
2. **Colour segmentation**: a pixel is foreground if its chroma (max − min channel) and its distance
   from the background model are both large; it takes the named colour of nearest HSV hue (hue is
   unchanged by darkening and by mixing with grey, so textures and antialiased edges keep it).
3. **Objects**: connected components per colour (8-connected), small specks dropped.
4. **Shape by geometry**: holes ⇒ ring; otherwise the nearest prototype in (solidity = area / convex
   hull area, fill = area / circumscribed-circle area), both rotation- and scale-invariant.
5. **Size** by the circumradius, **position** by the centroid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from mrflow.scenes.prompt import ObjectSpec, Prompt
from mrflow.scenes.vocab import COLOURS

MIN_CHROMA = 0.18  # foreground chroma (max − min channel, [0, 1]); backgrounds stay below ~0.09
MIN_BACKGROUND_DISTANCE = 0.15  # foreground max-channel distance from the background model
MIN_AREA = 0.003  # smallest object, as a fraction of the image area (a small star covers ~0.01)
RING_HOLES = 1.15  # filled area / area above this means the object has a hole
SMALL_RADIUS = 0.14  # circumradius threshold between small (≤ 0.12) and large (≥ 0.16) objects
# (solidity, fill) of ideal shapes: square fill 2/π; triangle 3√3/(4π); star (inner radius 0.42)
# 5·0.42·sin36° / (2.5·sin72°) and /π; cross (arm half-width 0.35 of its half-length) 2.06/2.81 and /π
SHAPE_PROTOTYPES: dict[str, tuple[float, float]] = {
    "circle": (1.0, 1.0),
    "square": (1.0, 0.637),
    "triangle": (1.0, 0.413),
    "star": (0.519, 0.393),
    "cross": (0.732, 0.655),
}
# Feature spreads: blur (low resolution, soft model output) rounds off corners and star tips, which moves
# solidity much more than fill, so fill differences weigh twice as much.
FEATURE_SCALE = (0.2, 0.1)


@dataclass(frozen=True)
class DetectedObject:
    """One object found in an image.

    Attributes:
        colour, shape, size: names from the vocabulary.
        x, y: centroid in [0, 1] image sides (``y`` downwards).
        radius: circumradius estimate in image sides.
        area: filled area as a fraction of the image.
        solidity, fill: the shape features (see module docstring).
    """

    colour: str
    shape: str
    size: str
    x: float
    y: float
    radius: float
    area: float
    solidity: float
    fill: float


def to_float_image(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 or float in [0, 1] → float32 in [0, 1]; raises ``ValueError`` otherwise."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] != array.shape[1]:
        raise ValueError(f"expected a square (H, W, 3) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _chroma(image: np.ndarray) -> np.ndarray:
    """max − min over the RGB channels of ``(H, W, 3)`` (per-channel ops: fast on interleaved data)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)


def background_model(image: np.ndarray, border: int = 2) -> np.ndarray:
    """The background as a per-channel plane fitted to the low-chroma border pixels.

    Args:
        image: ``(H, W, 3)`` float in [0, 1].
        border: width of the border ring in pixels.

    Returns:
        ``(H, W, 3)`` float32 predicted background.
    """
    size = image.shape[0]
    ring = np.zeros((size, size), dtype=bool)
    ring[:border], ring[-border:], ring[:, :border], ring[:, -border:] = True, True, True, True
    use = ring & (_chroma(image) < MIN_CHROMA)
    if use.sum() < 0.25 * ring.sum():  # objects cover most of the border: trust it anyway
        use = ring
    ys, xs = np.nonzero(use)
    design = np.stack([np.ones(len(xs)), xs / size, ys / size], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, image[use].astype(np.float64), rcond=None)
    grid = np.arange(size, dtype=np.float32) / size
    plane = coefficients[0] + grid[None, :, None] * coefficients[1] + grid[:, None, None] * coefficients[2]
    return plane.astype(np.float32)


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """HSV hue in [0, 360) of an ``(..., 3)`` RGB array (0 where the pixel is grey)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high, low = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    span = np.where(high > low, high - low, 1.0)
    hue = np.where(high == r, (g - b) / span, np.where(high == g, 2.0 + (b - r) / span, 4.0 + (r - g) / span))
    return (hue * 60.0) % 360.0


def colour_labels(image: np.ndarray) -> np.ndarray:
    """Per-pixel colour index into ``COLOURS`` (``-1`` for background), ``(H, W)`` int."""
    difference = np.abs(image - background_model(image))
    distance = np.maximum(np.maximum(difference[..., 0], difference[..., 1]), difference[..., 2])
    foreground = (_chroma(image) >= MIN_CHROMA) & (distance >= MIN_BACKGROUND_DISTANCE)
    palette_hues = hue_degrees(np.asarray(list(COLOURS.values()), dtype=np.float32) / 255.0)
    gap = np.abs(hue_degrees(image[foreground])[:, None] - palette_hues)
    labels = np.full(foreground.shape, -1, dtype=np.int64)
    labels[foreground] = np.minimum(gap, 360.0 - gap).argmin(axis=1)
    return labels


def _convex_hull_area(rows: np.ndarray, cols: np.ndarray) -> float:
    """Area of the convex hull of pixel squares: hull of centres grown by half a pixel."""
    points = np.stack([cols, rows], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):  # collinear or too few pixels
        return float(len(rows))
    return float(hull.volume + 0.5 * hull.area + math.pi / 4)  # 2-D: volume = area, area = perimeter


def classify_shape(solidity: float, fill: float, hole_ratio: float) -> str:
    """The vocabulary shape nearest to the measured features."""
    if hole_ratio > RING_HOLES:
        return "ring"

    def distance(shape: str) -> float:
        proto_solidity, proto_fill = SHAPE_PROTOTYPES[shape]
        return math.hypot(
            (solidity - proto_solidity) / FEATURE_SCALE[0], (fill - proto_fill) / FEATURE_SCALE[1]
        )

    return min(SHAPE_PROTOTYPES, key=distance)


def _measure(mask: np.ndarray, colour: str, size: int) -> DetectedObject:
    """Features of one component ``mask`` (cropped to its bounding box is fine, offsets handled by caller)."""
    filled = ndimage.binary_fill_holes(mask)
    rows, cols = np.nonzero(filled)
    area = float(len(rows))
    cy, cx = rows.mean(), cols.mean()
    radius_px = float(np.sqrt(((rows - cy) ** 2 + (cols - cx) ** 2).max())) + 0.5
    solidity = min(1.0, area / _convex_hull_area(rows, cols))
    fill = min(1.0, area / (math.pi * radius_px**2))
    shape = classify_shape(solidity, fill, area / max(1.0, float(mask.sum())))
    radius = radius_px / size
    return DetectedObject(
        colour=colour,
        shape=shape,
        size="small" if radius < SMALL_RADIUS else "large",
        x=float((cx + 0.5) / size),
        y=float((cy + 0.5) / size),
        radius=radius,
        area=area / size**2,
        solidity=solidity,
        fill=fill,
    )


def detect(image: np.ndarray) -> list[DetectedObject]:
    """Find the objects in ``image``.

    Args:
        image: ``(H, W, 3)`` square, uint8 or float in [0, 1].

    Returns:
        Detected objects, largest first.
    """
    image = to_float_image(image)
    size = image.shape[0]
    labels = colour_labels(image)
    found: list[DetectedObject] = []
    eight = np.ones((3, 3), dtype=bool)
    for index, colour in enumerate(COLOURS):
        components, count = ndimage.label(labels == index, structure=eight)
        if count == 0:
            continue
        areas = ndimage.sum_labels(np.ones_like(components), components, index=np.arange(1, count + 1))
        for component, box in enumerate(ndimage.find_objects(components), start=1):
            if areas[component - 1] < MIN_AREA * size**2:
                continue
            mask = np.pad(components[box] == component, 1)
            obj = _measure(mask, colour, size)
            shift_x, shift_y = (box[1].start - 1) / size, (box[0].start - 1) / size
            found.append(DetectedObject(**{**obj.__dict__, "x": obj.x + shift_x, "y": obj.y + shift_y}))
    return sorted(found, key=lambda o: -o.area)


ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "count", "size", "position", "relation")
POSITION_TESTS = {
    "left": lambda x, y: x < 0.4,
    "right": lambda x, y: x > 0.6,
    "top": lambda x, y: y < 0.4,
    "bottom": lambda x, y: y > 0.6,
    "center": lambda x, y: abs(x - 0.5) < 0.15 and abs(y - 0.5) < 0.15,
}


@dataclass(frozen=True)
class PromptScore:
    """Per-attribute correctness of one image for one prompt.

    Attributes:
        attributes: attribute name → correct, for the attributes the prompt names (``colour``, ``shape``
            and ``count`` always; ``size``, ``position``, ``relation`` when present).
        objects: what the detector found.
    """

    attributes: dict[str, bool]
    objects: tuple[DetectedObject, ...]

    @property
    def correct(self) -> bool:
        """True when every attribute is right (the strict, GenEval-style per-image score)."""
        return all(self.attributes.values())


def _score_spec(spec: ObjectSpec, count: int, objects: list[DetectedObject]) -> dict[str, bool]:
    """Colour present, exact count of that colour, and shape/size of the ``count`` largest of that colour."""
    same_colour = [o for o in objects if o.colour == spec.colour]
    matched = same_colour[:count]
    scores = {
        "colour": bool(same_colour),
        "shape": bool(matched) and all(o.shape == spec.shape for o in matched),
        "count": len(same_colour) == count,
    }
    if spec.size is not None:
        scores["size"] = bool(matched) and all(o.size == spec.size for o in matched)
    return scores


def relation_holds(relation: str, subject: DetectedObject, reference: DetectedObject) -> bool:
    """``subject`` *relation* ``reference`` by centroids: clearly apart, mostly along the relation's axis."""
    horizontal = relation in ("left of", "right of")
    sign = -1.0 if relation in ("left of", "above") else 1.0
    d_x, d_y = subject.x - reference.x, subject.y - reference.y
    along, across = (sign * d_x, abs(d_y)) if horizontal else (sign * d_y, abs(d_x))
    return along > max(0.05, 0.5 * across)


def score_objects(prompt: Prompt, objects: list[DetectedObject] | tuple[DetectedObject, ...]) -> PromptScore:
    """Score detected ``objects`` (largest first) against the structured ``prompt``."""
    objects = list(objects)
    attributes = _score_spec(prompt.subject, prompt.count, objects)
    subject = next((o for o in objects if o.colour == prompt.subject.colour), None)
    if prompt.position is not None:
        attributes["position"] = subject is not None and POSITION_TESTS[prompt.position](subject.x, subject.y)
    if prompt.reference is not None and prompt.relation is not None:
        for name, value in _score_spec(prompt.reference, 1, objects).items():
            attributes[name] = attributes.get(name, True) and value
        reference = next((o for o in objects if o.colour == prompt.reference.colour), None)
        attributes["relation"] = (
            subject is not None
            and reference is not None
            and relation_holds(prompt.relation, subject, reference)
        )
    return PromptScore(attributes=attributes, objects=tuple(objects))


def score_image(prompt: Prompt, image: np.ndarray) -> PromptScore:
    """Detect the objects in ``image`` ((H, W, 3) uint8 or float in [0, 1]) and score ``prompt``."""
    return score_objects(prompt, detect(image))
