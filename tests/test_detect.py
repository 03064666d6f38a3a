"""The detector on ground-truth renders, and prompt scoring on hand-made detections."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mrflow.scenes import (
    DetectedObject,
    ObjectSpec,
    Prompt,
    detect,
    render,
    sample_scenes,
    score_image,
    score_objects,
)
from mrflow.scenes.detect import classify_shape, template_scores
from mrflow.scenes.render import shape_sdf


def _accuracy(images_and_prompts) -> float:
    results = [score_image(prompt, image).correct for image, prompt in images_and_prompts]
    return sum(results) / len(results)


@pytest.fixture(scope="module")
def scenes():
    return sample_scenes(2024, 160)


def test_ground_truth_accuracy_at_256(scenes):
    assert _accuracy((render(s, 256), s.prompt) for s in scenes) >= 0.98


def test_ground_truth_accuracy_at_64(scenes):
    assert _accuracy((render(s, 64), s.prompt) for s in scenes) >= 0.98


def test_ground_truth_accuracy_bicubic_64_to_256(scenes):
    def upscaled(scene):
        return np.asarray(Image.fromarray(render(scene, 64)).resize((256, 256), Image.BICUBIC))

    assert _accuracy((upscaled(s), s.prompt) for s in scenes[:100]) >= 0.98


def test_detections_match_the_drawn_objects():
    for scene in sample_scenes(99, 40):
        found = detect(render(scene, 128))
        assert len(found) == len(scene.objects), scene.caption
        for obj in scene.objects:
            nearest = min(found, key=lambda d: math.hypot(d.x - obj.x, d.y - obj.y))
            assert math.hypot(nearest.x - obj.x, nearest.y - obj.y) < 0.03, scene.caption
            assert (nearest.colour, nearest.shape, nearest.size) == (obj.colour, obj.shape, obj.size)


def test_wrong_prompts_score_wrong(scenes):
    """Changing one attribute of the prompt must flip that attribute's score on the true image."""
    for scene in scenes[:40]:
        image = render(scene, 128)
        prompt = scene.prompt
        other_colour = next(
            c for c in ("red", "blue", "green") if c not in (prompt.subject.colour, _ref_colour(prompt))
        )
        wrong_colour = dataclasses.replace(prompt, subject=dataclasses.replace(prompt.subject, colour=other_colour))
        assert not score_image(wrong_colour, image).attributes["colour"]
        other_shape = "star" if prompt.subject.shape != "star" else "square"
        wrong_shape = dataclasses.replace(prompt, subject=dataclasses.replace(prompt.subject, shape=other_shape))
        assert not score_image(wrong_shape, image).attributes["shape"]
        if prompt.kind == "count":
            wrong_count = dataclasses.replace(prompt, count=5 - prompt.count)
            assert not score_image(wrong_count, image).attributes["count"]


def _ref_colour(prompt: Prompt) -> str | None:
    return prompt.reference.colour if prompt.reference is not None else None


def test_blank_image_scores_nothing():
    prompt = Prompt(kind="single", subject=ObjectSpec("circle", "red", "large"), position="left")
    score = score_image(prompt, np.full((64, 64, 3), 200, np.uint8))
    assert score.objects == () and not any(score.attributes.values())
    assert set(score.attributes) == {"colour", "shape", "count", "size", "position"}


def _obj(colour: str, x: float, y: float, shape: str = "circle") -> DetectedObject:
    return DetectedObject(colour, shape, "small", x, y, radius=0.1, area=0.03, solidity=1.0, fill=1.0)


def test_relation_scoring_uses_centroids():
    prompt = Prompt(
        kind="relation",
        subject=ObjectSpec("circle", "red"),
        relation="left of",
        reference=ObjectSpec("circle", "blue"),
    )
    assert score_objects(prompt, [_obj("red", 0.2, 0.5), _obj("blue", 0.7, 0.55)]).correct
    assert not score_objects(prompt, [_obj("red", 0.7, 0.5), _obj("blue", 0.2, 0.5)]).attributes["relation"]
    # mostly vertical displacement is not "left of"
    assert not score_objects(prompt, [_obj("red", 0.45, 0.1), _obj("blue", 0.5, 0.9)]).attributes["relation"]
    missing = score_objects(prompt, [_obj("red", 0.2, 0.5)])
    assert not missing.attributes["colour"] and not missing.attributes["relation"]


def test_count_needs_exact_number():
    prompt = Prompt(kind="count", subject=ObjectSpec("circle", "green"), count=2)
    objects = [_obj("green", 0.2, 0.2), _obj("green", 0.8, 0.8), _obj("green", 0.5, 0.5)]
    assert not score_objects(prompt, objects).attributes["count"]
    assert score_objects(prompt, objects[:2]).correct


@pytest.mark.parametrize("shape", ["circle", "square", "triangle", "star", "cross"])
def test_template_matching_is_rotation_and_scale_invariant(shape):
    grid = np.arange(80, dtype=np.float32) - 39.5
    for radius, angle in ((12.0, 0.3), (30.0, 1.1)):
        u = np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]
        v = -np.sin(angle) * grid[None, :] + np.cos(angle) * grid[:, None]
        scores = template_scores(shape_sdf(shape, u, v, radius) < 0)
        assert max(scores, key=scores.__getitem__) == shape
        assert scores[shape] > 0.85
    assert classify_shape(shape_sdf(shape, u, v, radius) < 0, hole=0.3) == "ring"


def test_tolerates_blur_and_noise(scenes):
    """Soft or grainy model output must not read as a different shape."""
    rng = np.random.default_rng(0)

    def degraded(scene):
        blurred = ndimage.gaussian_filter(render(scene, 256) / 255.0, (2.0, 2.0, 0.0))
        return np.clip(blurred + rng.normal(0.0, 0.05, blurred.shape), 0.0, 1.0)

    assert _accuracy((degraded(s), s.prompt) for s in scenes[:60]) >= 0.95


def test_rejects_non_square_images():
    with pytest.raises(ValueError, match="shape"):
        detect(np.zeros((32, 48, 3), np.uint8))
