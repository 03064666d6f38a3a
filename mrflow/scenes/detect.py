"""A deterministic detector of the scene vocabulary, and attribute scoring of prompts against images.

Pipeline, all numpy/scipy:

1. **Background model**: a plane per RGB channel fitted by least squares to the low-chroma pixels of
   the image border (plain and gradient backgrounds are planes).
2. **Colour segmentation**: a pixel is foreground if its chroma (max − min channel) and its distance
   from the background model are both large; it takes the named colour of nearest HSV hue (hue is
   unchanged by darkening and by mixing with grey, so textures and antialiased edges keep it).
3. **Objects**: connected components per colour (8-connected), small specks dropped.
4. **Shape by geometry**: a large hole ⇒ ring; otherwise the ideal shape (same area and centroid, best
   of several rotations) that overlaps the mask most (IoU). Blur and noise barely move that choice.
5. **Size** by the circumradius of the matched shape (from its area), **position** by the centroid.

Solidity (area / convex hull area) and fill (area / circle through the farthest pixel) are reported
with each object as diagnostics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from mrflow.scenes.prompt import ObjectSpec, Prompt
from mrflow.scenes.render import CROSS_ARM, STAR_INNER, shape_sdf
from mrflow.scenes.vocab import COLOURS

MIN_CHROMA = 0.18  # foreground chroma (max − min channel, [0, 1]); backgrounds stay below ~0.09
MIN_BACKGROUND_DISTANCE = 0.15  # foreground max-channel distance from the background model
MIN_AREA = 0.003  # smallest object, as a fraction of the image area (a small star covers ~0.01)
RING_HOLE = 0.08  # largest hole / filled area above this makes a ring (an ideal ring's hole is 0.3)
HALF_MAX = 0.45  # object pixels keep chroma ≥ this × the object's 90th-percentile chroma (blur-robust edge)
SMALL_RADIUS = 0.14  # circumradius threshold between small (≤ 0.12) and large (≥ 0.16) objects
# Area of each filled shape with circumradius 1 (a ring is matched as its filled disc, then by its hole).
UNIT_AREAS: dict[str, float] = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "star": 5 * STAR_INNER * math.sin(math.pi / 5),
    "cross": (8 * CROSS_ARM - 4 * CROSS_ARM**2) / (1 + CROSS_ARM**2),
}
SYMMETRY: dict[str, float] = {
    "circle": 2 * math.pi,
    "square": math.pi / 2,
    "triangle": 2 * math.pi / 3,
    "star": 2 * math.pi / 5,
    "cross": math.pi / 2,
}
TEMPLATE_GRID = 32  # the mask is compared with each template on this many points per side
TEMPLATE_ANGLES = 12  # rotations tried per shape, over its symmetry period


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


def template_scores(filled: np.ndarray) -> dict[str, float]:
    """Intersection over union of a filled mask with each ideal shape of the same area and centroid.

    Each shape is tried at ``TEMPLATE_ANGLES`` rotations (the best counts). Blur rounds corners, which
    moves single features like the fill of the circumscribed circle a lot but the overlap with the right
    template only a little, so this is what classifies.

    Args:
        filled: ``(h, w)`` bool mask of one object, holes filled.
    """
    rows, cols = np.nonzero(filled)
    cy, cx = rows.mean(), cols.mean()
    area = float(len(rows))
    reach = float(np.sqrt(((rows - cy) ** 2 + (cols - cx) ** 2).max())) + 1.0
    offsets = np.linspace(-reach, reach, TEMPLATE_GRID, dtype=np.float32)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    sample_rows, sample_cols = np.round(cy + dy).astype(int), np.round(cx + dx).astype(int)
    height, width = filled.shape
    valid = (sample_rows >= 0) & (sample_rows < height) & (sample_cols >= 0) & (sample_cols < width)
    observed = (filled[sample_rows.clip(0, height - 1), sample_cols.clip(0, width - 1)] & valid)[None]
    scores = {}
    for shape, unit_area in UNIT_AREAS.items():
        radius = math.sqrt(area / unit_area)
        angles = np.linspace(0, SYMMETRY[shape], TEMPLATE_ANGLES, endpoint=False, dtype=np.float32)[:, None, None]
        u = np.cos(angles) * dx + np.sin(angles) * dy
        v = -np.sin(angles) * dx + np.cos(angles) * dy
        template = shape_sdf(shape, u, v, radius) < 0
        union = np.maximum((template | observed).sum(axis=(1, 2)), 1)
        scores[shape] = float(((template & observed).sum(axis=(1, 2)) / union).max())
    return scores


def classify_shape(filled: np.ndarray, hole: float) -> str:
    """The vocabulary shape of a filled mask whose largest hole is ``hole`` × its area."""
    if hole > RING_HOLE:
        return "ring"
    scores = template_scores(filled)
    return max(scores, key=scores.__getitem__)


def _measure(mask: np.ndarray, colour: str, size: int) -> DetectedObject:
    """Features of one component ``mask`` (cropped to its bounding box is fine, offsets handled by caller)."""
    filled = ndimage.binary_fill_holes(mask)
    rows, cols = np.nonzero(filled)
    area = float(len(rows))
    cy, cx = rows.mean(), cols.mean()
    far_px = float(np.sqrt(((rows - cy) ** 2 + (cols - cx) ** 2).max())) + 0.5
    solidity = min(1.0, area / _convex_hull_area(rows, cols))
    fill = min(1.0, area / (math.pi * far_px**2))
    holes, count = ndimage.label(filled & ~mask)
    largest_hole = float(np.bincount(holes.ravel())[1:].max()) if count else 0.0
    shape = classify_shape(filled, largest_hole / area)
    # circumradius of the matched ideal shape with this area: robust to blur, unlike the farthest pixel
    radius = math.sqrt(area / UNIT_AREAS.get(shape, math.pi)) / size
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
    chroma = np.pad(_chroma(image), 1)
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
            strength = chroma[box[0].start : box[0].stop + 2, box[1].start : box[1].stop + 2]
            # keep the object's half-maximum region: blurred edges would otherwise widen it
            mask &= strength >= HALF_MAX * np.percentile(strength[mask], 90)
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
            subject is not None and reference is not None and relation_holds(prompt.relation, subject, reference)
        )
    return PromptScore(attributes=attributes, objects=tuple(objects))


def score_image(prompt: Prompt, image: np.ndarray) -> PromptScore:
    """Detect the objects in ``image`` ((H, W, 3) uint8 or float in [0, 1]) and score ``prompt``."""
    return score_objects(prompt, detect(image))
