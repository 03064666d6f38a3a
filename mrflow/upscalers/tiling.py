"""Tiled super-resolution with overlapping tiles blended by feathered weights.

A large image is cut into ``tile × tile`` input tiles overlapping by ``overlap`` pixels; each tile is
upscaled on its own and written into the output with a weight that is 0 in the outer quarter of each
shared strip (pixels that saw the zero padding at the tile edge), rises linearly across its middle
half and is 1 inside. Across a shared strip of exactly ``overlap`` pixels the two weights sum to 1;
the output is divided by the accumulated weight anyway, so wider overlaps (the last tile of a row is
aligned to the image edge) blend correctly too. With a model whose receptive field fits inside a
quarter of the overlap, tiled output equals untiled output up to float rounding.

On CUDA out-of-memory the whole image is redone with tiles half as large: the output accumulators
are rebuilt from scratch, so no tile from a failed attempt is ever reused or left out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

__all__ = ["TileFn", "auto_tile_size", "tile_starts", "upscale_tiled", "upscale_with_oom_retry"]

TileFn = Callable[[torch.Tensor], torch.Tensor]
"""``(B, 3, h, w)`` float32 in [0, 1] → ``(B, 3, s·h, s·w)`` float32 (not yet clamped)."""


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``; neighbours overlap by at least ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(start: int, end: int, length: int, overlap: int, scale: int, device: torch.device) -> torch.Tensor:
    """Per output pixel weight along one axis for the input span ``[start, end)``: ``(s·(end-start),)``."""
    position = (torch.arange((end - start) * scale, device=device, dtype=torch.float32) + 0.5) / scale
    weight = torch.ones_like(position)
    if overlap == 0:
        return weight
    margin = overlap // 4
    width = max(overlap - 2 * margin, 1)
    if start > 0:
        weight = torch.minimum(weight, ((position - margin) / width).clamp(0, 1))
    if end < length:
        weight = torch.minimum(weight, ((end - start - position - margin) / width).clamp(0, 1))
    return weight


def upscale_tiled(image: torch.Tensor, tile_fn: TileFn, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """Upscale ``image`` tile by tile and blend the tiles with feathered weights.

    Args:
        image: ``(B, 3, H, W)`` float32 in [0, 1].
        tile_fn: upscales one tile by ``scale`` (see :data:`TileFn`).
        scale: the model's native scale.
        tile: tile side in input pixels; a side shorter than ``tile`` is done in one piece.
        overlap: input pixels shared by neighbouring tiles, ``0 <= overlap < tile / 2``.

    Returns:
        ``(B, 3, s·H, s·W)`` float32, not clamped.
    """
    if not 0 <= 2 * overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be less than half the tile size {tile}")
    batch, channels, height, width = image.shape
    output = image.new_zeros((batch, channels, height * scale, width * scale), dtype=torch.float32)
    total_weight = image.new_zeros((1, 1, height * scale, width * scale), dtype=torch.float32)
    for y in tile_starts(height, tile, overlap):
        y_end = min(y + tile, height)
        weight_y = _ramp(y, y_end, height, overlap, scale, image.device)
        for x in tile_starts(width, tile, overlap):
            x_end = min(x + tile, width)
            upscaled_tile = tile_fn(image[:, :, y:y_end, x:x_end])
            expected = (batch, channels, (y_end - y) * scale, (x_end - x) * scale)
            if tuple(upscaled_tile.shape) != expected:
                raise RuntimeError(f"tile upscaled to {tuple(upscaled_tile.shape)}, expected {expected}")
            weight = weight_y[:, None] * _ramp(x, x_end, width, overlap, scale, image.device)[None, :]
            window = (..., slice(y * scale, y_end * scale), slice(x * scale, x_end * scale))
            output[window] += upscaled_tile.float() * weight
            total_weight[window] += weight
    if bool((total_weight <= 0).any()):
        raise RuntimeError("tiling left output pixels without any tile")  # cannot happen for valid args
    return output / total_weight


def upscale_with_oom_retry(
    image: torch.Tensor, tile_fn: TileFn, scale: int, tile: int | None, overlap: int, min_tile: int
) -> torch.Tensor:
    """:func:`upscale_tiled`, redone from scratch with halved tiles after a CUDA out-of-memory error.

    Args:
        tile: first tile side to try; ``None`` runs the whole image as one tile first.
        min_tile: the smallest tile side to fall back to; below it the error propagates.
        (other arguments as in :func:`upscale_tiled`)
    """
    height, width = image.shape[-2:]
    tile = tile or max(height, width)
    while True:
        tile_overlap = min(overlap, (tile - 1) // 2) if tile < max(height, width) else 0
        try:
            return upscale_tiled(image, tile_fn, scale, tile, tile_overlap)
        except torch.OutOfMemoryError:
            if tile // 2 < min_tile:
                raise
        # Outside the except block: the failed attempt's tensors are released before retrying.
        if image.is_cuda:
            torch.cuda.empty_cache()
        logger.warning("out of memory with %d px tiles; redoing the image with %d px tiles", tile, tile // 2)
        tile //= 2


def auto_tile_size(
    height: int, width: int, batch: int, bytes_per_pixel: float, budget_bytes: float, multiple_of: int
) -> int | None:
    """The largest square tile whose working memory fits the budget, or ``None`` if the image fits whole.

    Args:
        bytes_per_pixel: peak working memory per input pixel per image (measured or estimated).
        budget_bytes: memory the upscaler may use.
        multiple_of: the tile side is rounded down to a multiple of this (the model's requirement).
    """
    pixels = budget_bytes / (bytes_per_pixel * batch)
    if height * width <= pixels:
        return None
    side = int(math.isqrt(int(pixels)))
    return max(side // multiple_of * multiple_of, multiple_of)
