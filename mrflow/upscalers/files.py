"""Upscale image files on disk: the GAN stage used on its own.

Inputs are PNG, JPEG or WebP, RGB or RGBA, of any size. The colour channels go through the model;
an alpha channel is resized with antialiased bicubic interpolation (alpha masks are smooth or
binary, where a GAN trained on photographs would only invent texture). Outputs are written
atomically and never replace an existing file unless ``overwrite`` is set; every input and output
is checked before the model is loaded, so a mistake costs no model time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from mrflow.io import IMAGE_SUFFIXES, load_image, probe_image, save_image
from mrflow.upscalers.base import Upscaler
from mrflow.upscalers.builtin import available_upscalers, builtin_scale
from mrflow.upscalers.spandrel_upscaler import UpscalerConfig, resize

logger = logging.getLogger(__name__)

__all__ = ["plan_outputs", "upscale_files"]

MAX_SCALE = 16.0  # also checked by the command line


def _scale_label(scale: float) -> str:
    return f"{scale:g}".replace(".", "p")


def plan_outputs(inputs: Sequence[Path], out: Path | None, scale_label: str) -> list[Path]:
    """Where each input's result goes.

    ``out`` may be ``None`` (next to each input, as ``<stem>_x<scale>.png``), an image file name
    (only with a single input; its suffix picks the format) or a directory (created if missing).

    Raises:
        ValueError: if ``out`` is a file name with several inputs, or two inputs map to one output.
    """
    if out is not None and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        if len(inputs) != 1:
            raise ValueError(f"out {out} is a file name but {len(inputs)} inputs were given; use a directory")
        return [out]
    outputs = [(out or path.parent) / f"{path.stem}_x{scale_label}.png" for path in inputs]
    duplicates = {str(p) for p in outputs if outputs.count(p) > 1}
    if duplicates:
        raise ValueError(f"several inputs would be written to the same file: {', '.join(sorted(duplicates))}")
    return outputs


def upscale_files(
    inputs: Sequence[str | Path],
    upscaler: str | Path | Upscaler = "realesrgan-x4plus",
    *,
    scale: float | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    device: torch.device | str = "cpu",
    config: UpscalerConfig | None = None,
) -> list[Path]:
    """Upscale image files and write the results.

    Args:
        inputs: image files (PNG, JPEG, WebP; RGB or RGBA).
        upscaler: built-in name, weights file or :class:`Upscaler` object.
        scale: output size / input size per side, ``0 < scale <= 16``; default: the model's native scale.
        out: output file (single input) or directory; default: next to each input.
        overwrite: replace existing outputs.
        device: where the model runs.
        config: precision and tiling options for learned models.

    Returns:
        The written paths, in input order.

    Raises:
        FileNotFoundError: for a missing input.
        mrflow.io.ImageFileError: for an unreadable input.
        FileExistsError: if an output exists and ``overwrite`` is false (checked before any work).
        ValueError: for a bad ``scale``, ``out`` or upscaler name.
    """
    from mrflow.upscalers import load_upscaler

    if scale is not None and not 0 < scale <= MAX_SCALE:
        raise ValueError(f"scale must be in (0, {MAX_SCALE:g}], got {scale}")
    paths = [Path(p) for p in inputs]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"input image not found: {path}")
        probe_image(path)
    model, effective_scale = None, scale
    if effective_scale is None:
        effective_scale = _known_scale(upscaler)
    if effective_scale is None:  # a weights file: its scale is known once it is loaded
        model = load_upscaler(upscaler, device, config=config)
        effective_scale = model.scale
    outputs = plan_outputs(paths, Path(out) if out is not None else None, _scale_label(effective_scale))
    if not overwrite:
        existing = [str(p) for p in outputs if p.exists()]
        if existing:
            raise FileExistsError(f"output exists (pass overwrite to replace it): {', '.join(existing)}")
    if model is None:
        model = load_upscaler(upscaler, device, config=config)
    for path, output in zip(paths, outputs, strict=True):
        if output.parent != Path():
            output.parent.mkdir(parents=True, exist_ok=True)
        upscaled = upscale_image(model, load_image(path), effective_scale, torch.device(device))
        save_image(output, upscaled, overwrite=overwrite)
        logger.info("upscaled %s → %s (%dx%d)", path, output, upscaled.shape[2], upscaled.shape[1])
    return outputs


def _known_scale(upscaler: str | Path | Upscaler) -> int | None:
    """The native scale if it is known without loading weights (objects, built-in names)."""
    if isinstance(upscaler, Upscaler):
        return upscaler.scale
    if upscaler == "bicubic":
        return 1
    if isinstance(upscaler, str) and upscaler in available_upscalers():
        return builtin_scale(upscaler)
    return None


def upscale_image(model: Upscaler, image: torch.Tensor, scale: float, device: torch.device) -> torch.Tensor:
    """``(3 or 4, h, w)`` float in [0, 1] → ``(3 or 4, round(s·h), round(s·w))`` on the CPU."""
    height, width = image.shape[-2:]
    size = (max(round(height * scale), 1), max(round(width * scale), 1))
    rgb = model.upscale(image[None, :3].to(device), size)[0].cpu()
    if image.shape[0] == 3:
        return rgb
    alpha = resize(image[None, 3:].float(), size)[0].clamp(0.0, 1.0)
    return torch.cat([rgb, alpha])
