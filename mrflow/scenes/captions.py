"""Caption templates: several phrasings per attribute, chosen by the scene's random generator.

Every phrasing names exactly the attributes in the :class:`~mrflow.scenes.scene.Prompt`, so the
caption and the structured prompt always agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mrflow.scenes.scene import ObjectSpec, Prompt

SHAPE_WORDS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "circle": (("circle", "circles"), ("disc", "discs")),
    "square": (("square", "squares"),),
    "triangle": (("triangle", "triangles"),),
    "star": (("star", "stars"),),
    "ring": (("ring", "rings"), ("donut", "donuts")),
    "cross": (("cross", "crosses"), ("plus sign", "plus signs")),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
COUNT_WORDS: dict[int, tuple[str, ...]] = {2: ("two", "2", "a pair of"), 3: ("three", "3")}
POSITION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("on the left", "on the left side", "at the left"),
    "right": ("on the right", "on the right side", "at the right"),
    "top": ("at the top", "near the top", "in the upper part"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part"),
    "center": ("in the center", "in the middle", "at the center"),
}
RELATION_WORDS: dict[str, tuple[str, ...]] = {
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
    "above": ("above", "over", "higher than"),
    "below": ("below", "under", "beneath"),
}
FRAMES: tuple[str, ...] = ("{}", "{}", "an image of {}", "a picture of {}", "{} on a simple background")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(rng: np.random.Generator, spec: ObjectSpec, count: int = 1) -> str:
    """``"small red star"`` or ``"three red stars"`` (no article for one object)."""
    words = SHAPE_WORDS[spec.shape][int(rng.integers(len(SHAPE_WORDS[spec.shape])))]
    noun = words[0] if count == 1 else words[1]
    adjectives = [spec.colour] if spec.size is None else [_pick(rng, SIZE_WORDS[spec.size]), spec.colour]
    phrase = " ".join([*adjectives, noun])
    return phrase if count == 1 else f"{_pick(rng, COUNT_WORDS[count])} {phrase}"


def caption_for(prompt: Prompt, rng: np.random.Generator) -> str:
    """One phrasing of ``prompt``, e.g. ``"a picture of a big blue ring to the left of a green star"``."""
    if prompt.kind == "count":
        body = _noun_phrase(rng, prompt.subject, prompt.count)
    elif prompt.kind == "relation":
        assert prompt.reference is not None and prompt.relation is not None
        subject = _article(_noun_phrase(rng, prompt.subject))
        reference = _article(_noun_phrase(rng, prompt.reference))
        body = f"{subject} {_pick(rng, RELATION_WORDS[prompt.relation])} {reference}"
    else:
        body = _article(_noun_phrase(rng, prompt.subject))
        if prompt.position is not None:
            body = f"{body} {_pick(rng, POSITION_WORDS[prompt.position])}"
    return _pick(rng, FRAMES).format(body)
