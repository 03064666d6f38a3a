"""A learned super-resolution model (any architecture spandrel knows) behind the :class:`Upscaler` interface.

Reaching a target size: the model always runs once at its native scale on the full-resolution input,
then the result is resampled (antialiased bicubic) to exactly the requested size. For ×2 with a ×4
model this costs a full ×4 pass where shrinking the input first would cost a quarter of it, but
shrinking first throws away half the input's detail before the model sees it, while a ×4 pass
followed by an antialiased ×0.5 keeps it (supersampling); the model pass is a few percent of a
refinement step, so quality wins. Targets beyond the native scale are interpolated from one pass
(running a GAN twice compounds its artefacts). Targets no larger than the input skip the model
(except for ×1 restoration models, which exist to be run at the input size).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import spandrel
import torch
import torch.nn.functional as F

from mrflow.upscalers.loading import check_sr_descriptor, load_sr_model
from mrflow.upscalers.tiling import auto_tile_size, upscale_with_oom_retry

logger = logging.getLogger(__name__)

__all__ = ["Precision", "SpandrelUpscaler", "UpscalerConfig"]

Precision = Literal["auto", "fp32", "fp16", "bf16"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_PROBE_SIDE = 64
_MIN_TILE = 32


@dataclass(frozen=True)
class UpscalerConfig:
    """How a learned upscaler runs.

    Attributes:
        precision: compute dtype. ``"auto"``: fp16 on CUDA where the model supports it (fastest on
            tensor cores, and fine for these GANs), else bf16, else fp32; always fp32 on CPU (no
            half-precision speed-up there). An explicit choice is honoured on any device.
        tile_size: tile side in input pixels; ``None`` picks it from the memory budget (no tiling
            when the image fits); ``0`` never tiles.
        tile_overlap: input pixels shared by neighbouring tiles (32 keeps seams below visibility
            for RRDBNet; the outer quarter of it only provides context).
        memory_budget_mb: working memory for automatic tiling; ``None``: 60% of the free CUDA
            memory, or 2048 MB on CPU.
        compile: wrap the model in ``torch.compile`` on CUDA (slow first call, faster after).
        channels_last: use the channels-last layout on CUDA (faster convolutions on tensor cores).
    """

    precision: Precision = "auto"
    tile_size: int | None = None
    tile_overlap: int = 32
    memory_budget_mb: int | None = None
    compile: bool = False
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("auto", *_DTYPES):
            raise ValueError(f"precision must be 'auto', 'fp32', 'fp16' or 'bf16', got {self.precision!r}")
        if self.tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {self.tile_overlap}")
        if self.tile_size is not None and self.tile_size != 0 and self.tile_size <= 2 * self.tile_overlap:
            raise ValueError(f"tile_size {self.tile_size} must be 0, None or > 2 × tile_overlap ({self.tile_overlap})")
        if self.tile_size is not None and self.tile_size < 0:
            raise ValueError(f"tile_size must be None, 0 or positive, got {self.tile_size}")
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive, got {self.memory_budget_mb}")


class SpandrelUpscaler:
    """A super-resolution model loaded through spandrel, run tiled, in half precision where safe.

    Attributes:
        name: the built-in name or the weights file name.
        scale: the model's native scale.
        device: where the model runs; inputs must be on it.
        compute_dtype: the dtype of the forward pass (fp32 fallback per tile on NaN/Inf).
    """

    def __init__(
        self,
        descriptor: spandrel.ImageModelDescriptor,
        name: str,
        device: torch.device | str = "cpu",
        config: UpscalerConfig | None = None,
    ) -> None:
        self._descriptor = check_sr_descriptor(descriptor, name).float()
        self.name = name
        self.scale: int = descriptor.scale
        self.config = config or UpscalerConfig()
        self.device = torch.device("cpu")
        self._modules: dict[torch.dtype, torch.nn.Module] = {}
        self._bytes_per_pixel: dict[torch.dtype, float] = {}
        self.to(device)

    @classmethod
    def from_file(
        cls, path: str | Path, device: torch.device | str = "cpu", config: UpscalerConfig | None = None
    ) -> SpandrelUpscaler:
        """Load any supported model file (``.safetensors``, ``.pth``, ``.pt``, ``.ckpt``)."""
        return cls(load_sr_model(path), Path(path).name, device, config)

    @classmethod
    def from_builtin(
        cls, name: str, device: torch.device | str = "cpu", config: UpscalerConfig | None = None
    ) -> SpandrelUpscaler:
        """Load a built-in model by name (converted and cached on first use)."""
        from mrflow.upscalers.builtin import builtin_weights

        state, path = builtin_weights(name)
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(state)
        logger.info("built-in upscaler %s from %s", name, path)
        return cls(descriptor, name, device, config)

    def to(self, device: torch.device | str) -> SpandrelUpscaler:
        """Move the model to ``device`` and choose the compute dtype for it."""
        self.device = torch.device(device)
        self._descriptor.to(self.device)
        self._modules.clear()
        self._bytes_per_pixel.clear()
        self.compute_dtype = self._resolve_dtype()
        return self

    def _resolve_dtype(self) -> torch.dtype:
        descriptor, precision = self._descriptor, self.config.precision
        if precision == "auto":
            if self.device.type != "cuda":
                return torch.float32
            if descriptor.supports_half:
                return torch.float16
            return torch.bfloat16 if descriptor.supports_bfloat16 else torch.float32
        dtype = _DTYPES[precision]
        if (dtype == torch.float16 and not descriptor.supports_half) or (
            dtype == torch.bfloat16 and not descriptor.supports_bfloat16
        ):
            raise ValueError(f"precision {precision!r} is not supported by {self.name}")
        return dtype

    def _module(self, dtype: torch.dtype) -> torch.nn.Module:
        """The model in ``dtype`` (fp32 is the master copy; others are made on first use)."""
        if dtype not in self._modules:
            module = self._descriptor.model
            if dtype != torch.float32:
                module = copy.deepcopy(module).to(dtype)
            module.eval().requires_grad_(False)
            if self.device.type == "cuda" and self.config.channels_last:
                module = module.to(memory_format=torch.channels_last)
            if self.device.type == "cuda" and self.config.compile:
                module = torch.compile(module, dynamic=True)
            self._modules[dtype] = module
        return self._modules[dtype]

    def _forward(self, image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = image.to(dtype)
        if self.device.type == "cuda" and self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._module(dtype)(x).float()

    @torch.inference_mode()
    def _upscale_tile(self, tile: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w)`` float32 → ``(B, 3, s·h, s·w)`` float32: pad, run, fall back to fp32, crop."""
        height, width = tile.shape[-2:]
        padded = pad_to_requirements(tile, self._descriptor.size_requirements)
        output = self._forward(padded, self.compute_dtype)
        if self.compute_dtype != torch.float32 and not bool(torch.isfinite(output).all()):
            logger.warning(
                "%s: %s pass gave NaN/Inf on a %dx%d tile; redoing it in float32",
                self.name,
                self.compute_dtype,
                height,
                width,
            )
            output = self._forward(padded, torch.float32)
        return output[..., : height * self.scale, : width * self.scale]

    def _tile_size(self, image: torch.Tensor) -> int | None:
        """The tile side for this image (``None``: run it whole)."""
        if self.config.tile_size is not None:
            return self.config.tile_size or None
        batch, _, height, width = image.shape
        requirements = self._descriptor.size_requirements
        per_pixel, budget = self._working_bytes_per_pixel(), self._budget_bytes()
        tile = auto_tile_size(height, width, batch, per_pixel, budget, requirements.multiple_of)
        if tile is not None:
            tile = max(tile, 2 * self.config.tile_overlap + requirements.multiple_of, requirements.minimum)
            logger.info("%s: tiling a %dx%d input with %d px tiles", self.name, height, width, tile)
        return tile

    def _budget_bytes(self) -> float:
        if self.config.memory_budget_mb is not None:
            return self.config.memory_budget_mb * 2**20
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return 0.6 * free
        return 2048 * 2**20

    def _working_bytes_per_pixel(self) -> float:
        """Peak working memory per input pixel: measured on CUDA with a probe tile, estimated on CPU."""
        dtype = self.compute_dtype
        if dtype not in self._bytes_per_pixel:
            if self.device.type == "cuda":
                self._bytes_per_pixel[dtype] = self._probe_cuda_bytes_per_pixel()
            else:  # ~64 feature maps at low resolution plus a few at the output resolution
                self._bytes_per_pixel[dtype] = dtype.itemsize * 64 * (16 + 4 * self.scale**2)
        return self._bytes_per_pixel[dtype]

    def _probe_cuda_bytes_per_pixel(self) -> float:
        side = max(_PROBE_SIDE, self._descriptor.size_requirements.minimum)
        probe = torch.rand(1, 3, side, side, device=self.device)
        self._module(self.compute_dtype)  # build (cast, compile) first: weights are not working memory
        torch.cuda.synchronize(self.device)
        baseline = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._upscale_tile(probe)
        peak = torch.cuda.max_memory_allocated(self.device) - baseline
        return 1.25 * peak / (side * side)  # margin for allocator fragmentation

    def upscale(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Upscale to exactly ``size``.

        Args:
            image: ``(B, 3, h, w)`` float in [0, 1] on :attr:`device`.
            size: target ``(H, W)``.

        Returns:
            ``(B, 3, H, W)`` in [0, 1], in ``image``'s dtype, on :attr:`device`.
        """
        _check_inputs(image, size, self.device)
        height, width = image.shape[-2:]
        source = image.float()
        if size[0] > height or size[1] > width or self.scale == 1:
            min_tile = max(_MIN_TILE, self._descriptor.size_requirements.minimum)
            tile, overlap = self._tile_size(image), self.config.tile_overlap
            source = upscale_with_oom_retry(source, self._upscale_tile, self.scale, tile, overlap, min_tile)
        return resize(source, size).clamp(0.0, 1.0).to(image.dtype)


def pad_to_requirements(image: torch.Tensor, requirements: spandrel.SizeRequirements) -> torch.Tensor:
    """Pad ``(B, C, h, w)`` at the bottom/right to the model's size requirements (reflect, then replicate)."""
    height, width = image.shape[-2:]
    pad_w, pad_h = requirements.get_padding(width, height)
    if pad_w == 0 and pad_h == 0:
        return image
    reflect_w, reflect_h = min(pad_w, width - 1), min(pad_h, height - 1)
    image = F.pad(image, (0, reflect_w, 0, reflect_h), mode="reflect")
    return F.pad(image, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resampling of ``(B, C, h, w)`` float to ``(B, C, *size)`` (identity if equal)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)


def _check_inputs(image: torch.Tensor, size: tuple[int, int], device: torch.device) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, h, w), got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"image must be a float tensor in [0, 1], got {image.dtype}")
    if image.device.type != device.type or (device.index is not None and image.device != device):
        raise ValueError(f"image is on {image.device} but the upscaler is on {device}")
    if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
