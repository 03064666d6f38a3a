"""Procedural captioned scenes of simple objects, rendered at any resolution, and their detector.

Quick use::

    scenes = sample_scenes(seed=0, count=4)
    image = render(scenes[0], 256)  # (256, 256, 3) uint8
    batch, captions = make_batch(seed=0, count=64, sizes=(64, 256))
"""

from __future__ import annotations

from mrflow.scenes.render import make_batch, render, render_float, render_scenes
from mrflow.scenes.scene import (
    Background,
    ObjectSpec,
    Prompt,
    Scene,
    SceneObject,
    sample_prompt,
    sample_scene,
    sample_scenes,
)

__all__ = [
    "Background",
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
