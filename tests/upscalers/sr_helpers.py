"""Tiny random-weight models built from spandrel's architecture classes."""

from __future__ import annotations

import spandrel
import torch
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN


def random_weights(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The module's state dict with reproducible random values (not the default init)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        key: torch.randn(value.shape, generator=generator) * (0.5 / max(value[0].numel(), 1) ** 0.5)
        for key, value in module.state_dict().items()
    }


def tiny_rrdb(scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """RRDBNet, 1 block, 8 features; ``scale=2`` uses the Real-ESRGAN x2plus pixel-unshuffle layout."""
    if scale == 2:
        return random_weights(ESRGAN(in_nc=12, num_filters=8, num_blocks=1, scale=4, shuffle_factor=2), seed)
    return random_weights(ESRGAN(in_nc=3, num_filters=8, num_blocks=1, scale=scale), seed)


def tiny_compact(scale: int = 4, num_conv: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """SRVGGNetCompact, 8 features; its receptive field is ``num_conv + 2`` pixels in each direction."""
    return random_weights(Compact(num_feat=8, num_conv=num_conv, upscale=scale), seed)


def descriptor(state: dict[str, torch.Tensor]) -> spandrel.ImageModelDescriptor:
    return spandrel.ModelLoader("cpu").load_from_state_dict(state)


def tiny_transformer(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """SwinIR or HAT ×2 with one 2-layer stage of width 12 and 4 px windows."""
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.SwinIR import SwinIR

    common = {
        "upscale": 2,
        "img_size": 16,
        "window_size": 4,
        "img_range": 1.0,
        "depths": [2],
        "embed_dim": 12,
        "num_heads": [2],
        "mlp_ratio": 2,
        "upsampler": "pixelshuffle",
        "resi_connection": "1conv",
    }
    if arch == "SwinIR":
        return random_weights(SwinIR(**common), seed)
    return random_weights(HAT(compress_ratio=3, squeeze_factor=3, overlap_ratio=0.5, **common), seed)
