"""Stage 2: pixel-space super-resolution."""

from __future__ import annotations

from pathlib import Path

import torch

from mrflow.upscalers.base import Upscaler
from mrflow.upscalers.bicubic import BicubicUpscaler

__all__ = ["BicubicUpscaler", "Upscaler", "load_upscaler"]


def load_upscaler(spec: str | Path | Upscaler | None, device: torch.device | str = "cpu") -> Upscaler:
    """Resolve an upscaler given by name, by file path or as an object.

    Args:
        spec: ``None`` or ``"bicubic"`` for interpolation, an object that already satisfies
            :class:`Upscaler`, or (once the GAN stage lands) a built-in name or weights file.
        device: where the upscaler runs.
    """
    if spec is None or (isinstance(spec, str) and spec == "bicubic"):
        return BicubicUpscaler(device)
    if isinstance(spec, Upscaler):
        return spec.to(device)
    raise ValueError(f"unknown upscaler {spec!r}: expected 'bicubic' or an Upscaler object")

