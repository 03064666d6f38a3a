"""Plain bicubic interpolation: the reference upscaler with no learned weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BicubicUpscaler:
    """Antialiased bicubic resampling to the requested size (any scale, up or down)."""

    name = "bicubic"
    scale = 1

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def upscale(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(B, 3, h, w)`` in [0, 1] → ``(B, 3, *size)`` in [0, 1]."""
        if tuple(image.shape[-2:]) == tuple(size):
            return image
        out = F.interpolate(image.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        return out.clamp_(0.0, 1.0).to(image.dtype)

    def to(self, device: torch.device | str) -> BicubicUpscaler:
        self.device = torch.device(device)
        return self
