"""Procedural captioned scenes of simple objects, rendered at any resolution, and their detector.

Quick use::

    scenes = sample_scenes(seed=0, count=4)
    image = render(scenes[0], 256)  # (256, 256, 3) uint8
    batch, captions = make_batch(seed=0, count=64, sizes=(64, 256))
    score_image(scenes[0].prompt, image).attributes  # {"colour": True, "shape": True, ...}
"""

from __future__ import annotations

from mrflow.scenes.captions import caption_for, parse_caption
from mrflow.scenes.detect import DetectedObject, PromptScore, detect, score_image, score_objects
from mrflow.scenes.prompt import ObjectSpec, Prompt, sample_prompt
from mrflow.scenes.render import make_batch, render, render_float, render_scenes
from mrflow.scenes.scene import Background, Scene, SceneObject, layout_scene, sample_scene, sample_scenes

__all__ = [
    "Background",
    "DetectedObject",
    "PromptScore",
    "caption_for",
    "detect",
    "layout_scene",
    "parse_caption",
    "score_image",
    "score_objects",
    "ObjectSpec",
    "Prompt",
    "Scene",
    "SceneObject",
    "make_batch",
    "render",
    "render_float",
    "render_scenes",
    "sample_prompt",
    "sample_scene",
    "sample_scenes",
]
