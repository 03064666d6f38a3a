"""The upscaler interface used by stage 2 of the pipeline."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Upscaler(Protocol):
    """Pixel-space super-resolution, one forward pass.

    Contract: ``upscale(image, size)`` takes ``(B, 3, h, w)`` float in [0, 1] on the upscaler's
    device and returns ``(B, 3, size[0], size[1])`` float in [0, 1] on the same device, in the
    input's dtype. The upscaler decides how to reach ``size`` from its native ``scale`` (for
    example run ×4 then resample) and must return exactly ``size``.
    """

    name: str
    scale: int

    def upscale(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor: ...

    def to(self, device: torch.device | str) -> Upscaler: ...
