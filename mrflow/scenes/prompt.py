"""Structured prompts: the attributes a caption names, which the detector scores one by one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mrflow.scenes.vocab import COLOURS, POSITIONS, RELATIONS, SHAPES, SIZES

PromptKind = Literal["single", "relation", "count"]
KIND_WEIGHTS: dict[str, float] = {"single": 0.5, "relation": 1 / 3, "count": 1 / 6}


def check_choice(name: str, value: object, allowed: tuple[str, ...] | dict) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object as a prompt names it: shape and colour, size when the prompt mentions it."""

    shape: str
    colour: str
    size: str | None = None

    def __post_init__(self) -> None:
        check_choice("shape", self.shape, SHAPES)
        check_choice("colour", self.colour, COLOURS)
        if self.size is not None:
            check_choice("size", self.size, SIZES)


@dataclass(frozen=True)
class Prompt:
    """The structure behind a caption, which the detector scores attribute by attribute.

    Attributes:
        kind: ``single`` (one object, maybe a position), ``relation`` (two objects and a spatial
            relation, ``subject`` *relation* ``reference``) or ``count`` (2–3 identical objects).
        subject: the (first) object.
        count: how many copies of ``subject`` (1 unless ``kind == "count"``).
        position: image region of a single object (``left``, ``right``, ``top``, ``bottom``,
            ``center``) or ``None``.
        relation: ``left of``, ``right of``, ``above`` or ``below`` for relation prompts.
        reference: the second object of a relation prompt; its colour differs from the subject's.
    """

    kind: PromptKind
    subject: ObjectSpec
    count: int = 1
    position: str | None = None
    relation: str | None = None
    reference: ObjectSpec | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KIND_WEIGHTS)
        expected_count = (2, 3) if self.kind == "count" else (1,)
        if self.count not in expected_count:
            raise ValueError(f"count must be in {expected_count} for kind {self.kind!r}, got {self.count!r}")
        if self.position is not None:
            check_choice("position", self.position, POSITIONS)
            if self.kind != "single":
                raise ValueError(f"position is only for single prompts, got kind {self.kind!r}")
        is_relation = self.kind == "relation"
        if is_relation != (self.relation is not None) or is_relation != (self.reference is not None):
            raise ValueError(
                f"relation and reference are required exactly for relation prompts, got kind {self.kind!r}, "
                f"relation {self.relation!r}, reference {self.reference!r}"
            )
        if self.relation is not None:
            check_choice("relation", self.relation, RELATIONS)
        if self.reference is not None and self.reference.colour == self.subject.colour:
            raise ValueError(f"relation objects need different colours, both are {self.subject.colour!r}")


def _sample_spec(rng: np.random.Generator, mention_size: float = 0.5, exclude_colour: str | None = None) -> ObjectSpec:
    colours = [c for c in COLOURS if c != exclude_colour]
    size = str(rng.choice(SIZES)) if rng.random() < mention_size else None
    return ObjectSpec(shape=str(rng.choice(SHAPES)), colour=str(rng.choice(colours)), size=size)


def sample_prompt(rng: np.random.Generator) -> Prompt:
    """Draw a structured prompt: half single objects, a third relations, the rest counts."""
    kinds = list(KIND_WEIGHTS)
    kind = kinds[int(rng.choice(len(kinds), p=list(KIND_WEIGHTS.values())))]
    subject = _sample_spec(rng)
    if kind == "single":
        position = str(rng.choice(POSITIONS)) if rng.random() < 0.5 else None
        return Prompt(kind="single", subject=subject, position=position)
    if kind == "count":
        return Prompt(kind="count", subject=subject, count=int(rng.integers(2, 4)))
    reference = _sample_spec(rng, exclude_colour=subject.colour)
    return Prompt(kind="relation", subject=subject, relation=str(rng.choice(RELATIONS)), reference=reference)
