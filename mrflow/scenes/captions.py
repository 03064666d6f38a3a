"""Caption templates: several phrasings per attribute, chosen by the scene's random generator.

Every phrasing names exactly the attributes in the :class:`~mrflow.scenes.scene.Prompt`, so the
caption and the structured prompt always agree.
"""

from __future__ import annotations

import numpy as np

from mrflow.scenes.prompt import ObjectSpec, Prompt
from mrflow.scenes.vocab import COLOURS

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


def _parse_noun_phrase(text: str) -> tuple[ObjectSpec, int]:
    """``"a big red star"`` / ``"three red stars"`` → (spec, count); raises ``ValueError``."""
    count = 1
    for number, words in COUNT_WORDS.items():
        for word in sorted(words, key=len, reverse=True):
            if text.startswith(word + " "):
                count, text = number, text[len(word) + 1 :]
                break
        if count != 1:
            break
    else:
        for article in ("a ", "an "):
            text = text.removeprefix(article)
    size = next((s for s, words in SIZE_WORDS.items() for w in words if text.startswith(w + " ")), None)
    if size is not None:
        text = text.split(" ", 1)[1]
    colour, _, noun = text.partition(" ")
    shapes = {forms[0 if count == 1 else 1]: shape for shape, all_forms in SHAPE_WORDS.items() for forms in all_forms}
    if colour not in COLOURS or noun not in shapes:
        raise ValueError(f"cannot parse object phrase {text!r}")
    return ObjectSpec(shape=shapes[noun], colour=colour, size=size), count


def _strip_frame(text: str) -> str:
    for frame in FRAMES:
        prefix, _, suffix = frame.partition("{}")
        if prefix and text.startswith(prefix):
            text = text[len(prefix) :]
        if suffix and text.endswith(suffix):
            text = text[: -len(suffix)]
    return text


def parse_caption(caption: str) -> Prompt:
    """The structured prompt behind a caption written by :func:`caption_for`.

    Raises:
        ValueError: if ``caption`` is not in the grammar (the message quotes it).
    """
    text = _strip_frame(" ".join(caption.lower().strip().rstrip(".").split()))
    try:
        for relation, phrases in RELATION_WORDS.items():
            for phrase in sorted(phrases, key=len, reverse=True):
                left, sep, right = text.partition(f" {phrase} ")
                if sep:
                    subject, reference = _parse_noun_phrase(left)[0], _parse_noun_phrase(right)[0]
                    return Prompt(kind="relation", subject=subject, relation=relation, reference=reference)
        for position, phrases in POSITION_WORDS.items():
            for phrase in phrases:
                if text.endswith(f" {phrase}"):
                    subject, _ = _parse_noun_phrase(text[: -len(phrase) - 1])
                    return Prompt(kind="single", subject=subject, position=position)
        subject, count = _parse_noun_phrase(text)
        return Prompt(kind="count" if count > 1 else "single", subject=subject, count=count)
    except ValueError as exc:
        raise ValueError(f"caption {caption!r} is not in the scene grammar: {exc}") from exc
