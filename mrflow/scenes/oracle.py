"""A stand-in for :class:`mrflow.MrFlowPipeline` that draws each prompt's scene exactly.

It parses every prompt back to its structure and renders a scene for it, so a benchmark run on it
should score ~100 %: a check that the benchmark, the grammar and the detector agree, without a model.
"""

from __future__ import annotations

import time

import numpy as np
import torch.nn.functional as F

from mrflow.output import STAGES, MrFlowOutput
from mrflow.scenes.captions import parse_caption
from mrflow.scenes.render import render_scenes
from mrflow.scenes.scene import layout_scene


class OraclePipeline:
    """Renders the scene a prompt describes; staged presets also return low-res and upscaled images.

    Args:
        low_res_scale: low-res side / target side for staged presets, in (0, 1].
    """

    def __init__(self, low_res_scale: float = 0.25) -> None:
        if not 0 < low_res_scale <= 1:
            raise ValueError(f"low_res_scale must be in (0, 1], got {low_res_scale!r}")
        self.low_res_scale = low_res_scale

    def __call__(
        self,
        prompt: str | list[str],
        *,
        height: int = 256,
        width: int = 256,
        preset: str = "12plus1",
        seed: int | list[int] | None = None,
        output_type: str = "pt",
    ) -> MrFlowOutput:
        """Draw the prompts' scenes; ``output_type`` must be ``"pt"`` ((B, 3, H, W) float in [0, 1])."""
        start = time.perf_counter()
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if height != width or output_type != "pt":
            raise ValueError(f"the oracle draws square 'pt' images, got {height}x{width} {output_type!r}")
        seeds = seed if isinstance(seed, list) else [(seed or 0) + i for i in range(len(prompts))]
        scenes = [
            layout_scene(parse_caption(text), np.random.default_rng([s]), caption=text)
            for text, s in zip(prompts, seeds, strict=True)
        ]
        stage_seconds = dict.fromkeys(STAGES, 0.0)
        images = render_scenes(scenes, height)
        low_res = upscaled = None
        low_res_size = None
        if preset != "native":
            side = max(8, round(height * self.low_res_scale))
            low_res_size = (side, side)
            low_res = render_scenes(scenes, side)
            upscaled = F.interpolate(low_res, size=(height, width), mode="bicubic", align_corners=False)
            upscaled = upscaled.clamp(0.0, 1.0)
        stage_seconds["native_sampling" if preset == "native" else "refine"] = time.perf_counter() - start
        return MrFlowOutput(
            images=images,
            low_res_images=low_res,
            upscaled_images=upscaled,
            stage_seconds=stage_seconds,
            total_seconds=time.perf_counter() - start,
            model_evals={},
            seeds=list(seeds),
            refine_seeds=None,
            sigmas={},
            refine_sigma=None,
            size=(height, width),
            low_res_size=low_res_size,
            config={"preset": preset, "oracle": True},
        )
