"""Seeds and noise: drawn on a CPU generator in float32, so images do not depend on the device."""

from __future__ import annotations

import hashlib
import secrets

import torch

MAX_SEED = 2**63 - 1


def derive_seed(seed: int, stage: str) -> int:
    """A seed for one stage, fixed by the image seed and the stage name, independent across stages."""
    digest = hashlib.blake2b(f"{seed}:{stage}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & MAX_SEED


def image_seeds(seed: int | list[int] | None, count: int) -> list[int]:
    """One seed per image: ``seed + i`` for an int, the list itself, or fresh random seeds for None."""
    if seed is None:
        base = secrets.randbits(62)
        return [base + i for i in range(count)]
    if isinstance(seed, list):
        if len(seed) != count:
            raise ValueError(f"got {len(seed)} seeds for {count} images")
        seeds = seed
    else:
        seeds = [seed + i for i in range(count)]
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {s!r}")
    return seeds


def generators(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(s) for s in seeds]


def draw_noise(shape: tuple[int, ...], gens: list[torch.Generator], device: torch.device | str) -> torch.Tensor:
    """Standard normal noise ``(len(gens), *shape)``: one float32 draw per generator (on the
    generator's own device, the CPU for seeds), then moved to ``device``."""
    draws = [torch.randn(shape, generator=g, device=g.device, dtype=torch.float32).to(device) for g in gens]
    return torch.stack(draws)
