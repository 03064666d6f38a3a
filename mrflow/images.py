"""Image conversions, all in one place.

Between stages images are ``(B, 3, H, W)`` float tensors on the device: [-1, 1] at the VAE
boundary, [0, 1] at the super-resolution boundary. PIL and uint8 appear only at the edges.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from PIL import Image

OutputType = Literal["pil", "pt", "np"]
OUTPUT_TYPES: tuple[str, ...] = ("pil", "pt", "np")


def vae_to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (VAE output) → [0, 1], clamped, float32."""
    return (images.to(torch.float32) / 2 + 0.5).clamp(0.0, 1.0)


def unit_to_vae(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1]."""
    return images * 2 - 1


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """``(B, 3, H, W)`` in [0, 1] → RGB PIL images (rounded, not truncated, to uint8)."""
    return [Image.fromarray(array) for array in to_uint8(images)]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``(B, C, H, W)`` in [0, 1] → ``(B, H, W, C)`` uint8, rounded to nearest."""
    scaled = (images.detach().to(torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def convert_output(images: torch.Tensor, output_type: OutputType) -> list[Image.Image] | torch.Tensor | np.ndarray:
    """``(B, 3, H, W)`` in [0, 1] → PIL list, the tensor itself, or ``(B, H, W, 3)`` float32 numpy."""
    if output_type == "pt":
        return images
    if output_type == "np":
        return images.detach().to(torch.float32).permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "pil":
        return to_pil(images)
    raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")


def from_pil(images: list[Image.Image]) -> torch.Tensor:
    """RGB PIL images of one size → ``(B, 3, H, W)`` float32 in [0, 1]."""
    arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
