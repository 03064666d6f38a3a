"""What a pipeline call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

Images = list[Image.Image] | torch.Tensor | np.ndarray

# Every call reports all of these; stages its mode skips are 0 (native mode runs only
# text_encoding, native_sampling, decode and postprocess).
STAGES: tuple[str, ...] = (
    "text_encoding",
    "native_sampling",
    "low_res_sampling",
    "low_res_decode",
    "upscale",
    "encode",
    "refine",
    "decode",
    "postprocess",
)


@dataclass
class MrFlowOutput:
    """Images and everything needed to report or reproduce them.

    Attributes:
        images: final images in the requested ``output_type``.
        low_res_images: stage-1 decoded images (``None`` in native mode).
        upscaled_images: stage-2 upscaled images at the target size (``None`` in native mode).
        stage_seconds: wall seconds per stage, keys from :data:`STAGES` (stages a mode skips are 0).
        total_seconds: wall seconds of the whole call.
        model_evals: transformer evaluations per sampling stage (CFG runs both branches in one batch).
        seeds: the seed of each image (stage-1 noise).
        refine_seeds: the seed of each image's refine noise (``None`` in native mode).
        sigmas: the σ schedules used, per sampling stage, ending in 0.
        refine_sigma: the true noise level injected before refinement (``None`` in native mode).
        size: ``(height, width)`` of the final images.
        low_res_size: ``(height, width)`` of stage 1 (``None`` in native mode).
        config: the sampling configuration as a plain dict (preset name, mode and values).
    """

    images: Images
    low_res_images: Images | None
    upscaled_images: Images | None
    stage_seconds: dict[str, float]
    total_seconds: float
    model_evals: dict[str, int]
    seeds: list[int]
    refine_seeds: list[int] | None
    sigmas: dict[str, list[float]]
    refine_sigma: float | None
    size: tuple[int, int]
    low_res_size: tuple[int, int] | None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def num_model_evals(self) -> int:
        return sum(self.model_evals.values())

    @property
    def overhead_seconds(self) -> float:
        """Wall time outside every timed stage (orchestration)."""
        return self.total_seconds - sum(self.stage_seconds.values())
