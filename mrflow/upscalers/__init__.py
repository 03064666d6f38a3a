"""Stage 2: pixel-space super-resolution.

Upscalers are resolved by :func:`load_upscaler` from a built-in name (see
:func:`available_upscalers`), a weights file in any format spandrel recognises, or an object
implementing :class:`Upscaler`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mrflow.upscalers.base import Upscaler
from mrflow.upscalers.bicubic import BicubicUpscaler
from mrflow.upscalers.builtin import available_upscalers
from mrflow.upscalers.files import upscale_files
from mrflow.upscalers.loading import SUPPORTED_SUFFIXES, ModelFileError
from mrflow.upscalers.spandrel_upscaler import SpandrelUpscaler, UpscalerConfig

__all__ = [
    "BicubicUpscaler",
    "ModelFileError",
    "SpandrelUpscaler",
    "Upscaler",
    "UpscalerConfig",
    "available_upscalers",
    "load_upscaler",
    "upscale_files",
]


def load_upscaler(
    spec: str | Path | Upscaler | None,
    device: torch.device | str = "cpu",
    *,
    config: UpscalerConfig | None = None,
) -> Upscaler:
    """Resolve an upscaler given by name, by file path or as an object.

    Args:
        spec: ``None`` or ``"bicubic"`` for interpolation; a built-in name such as
            ``"realesrgan-x4plus"``; a path to a ``.safetensors``/``.pth``/``.pt``/``.ckpt`` file; or
            an object that already satisfies :class:`Upscaler` (moved to ``device``).
        device: where the upscaler runs.
        config: precision and tiling options for learned models.

    Raises:
        ValueError: for an unknown name (the message lists the available ones).
        FileNotFoundError: for a path that does not exist.
        ModelFileError: for a file that is not a usable super-resolution model.
    """
    if spec is None or spec == "bicubic":
        return BicubicUpscaler(device)
    if isinstance(spec, Upscaler):
        return spec.to(device)
    if isinstance(spec, str) and spec in available_upscalers():
        return SpandrelUpscaler.from_builtin(spec, device, config)
    if isinstance(spec, Path) or (isinstance(spec, str) and _looks_like_path(spec)):
        return SpandrelUpscaler.from_file(spec, device, config)
    raise ValueError(f"unknown upscaler {spec!r}: expected a weights file or one of {', '.join(available_upscalers())}")


def _looks_like_path(spec: str) -> bool:
    return Path(spec).suffix.lower() in SUPPORTED_SUFFIXES or Path(spec).exists() or "/" in spec
