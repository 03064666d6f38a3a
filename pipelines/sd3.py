"""Stable Diffusion 3 / 3.5 through diffusers' ``StableDiffusion3Pipeline``.

Family facts: latents ``(B, 16, H/8, W/8)`` patchified 2×2 inside the transformer, so sides are
multiples of 16; the scheduler's default grid with a static shift (3.0); true classifier-free
guidance with a negative prompt (default ""), CFG scale 7.0 for SD3 / 3.5-large style models,
timestep given to the transformer as σ·1000.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from diffusers import StableDiffusion3Pipeline

from mrflow.pipelines.common import (
    PipelineBackbone,
    decode_scaled,
    encode_scaled,
    scheduler_sigmas,
    vae_scale_factor,
)

logger = logging.getLogger(__name__)


@dataclass
class SD3Embeddings:
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    negative_embeds: torch.Tensor
    negative_pooled: torch.Tensor


class SD3Backbone(PipelineBackbone):
    """Adapter of a diffusers ``StableDiffusion3Pipeline`` to :class:`mrflow.backbone.Backbone`.

    CFG is on when ``guidance > 1`` (both branches in one batch, as diffusers does).
    """

    pipeline_class = StableDiffusion3Pipeline
    family = "sd3"
    uses_negative_prompt = True

    def __init__(self, pipe: StableDiffusion3Pipeline, source: str = "", max_sequence_length: int = 256) -> None:
        self.pipe = pipe
        self.source = source
        self.max_sequence_length = max_sequence_length
        transformer = pipe.transformer
        self.latent_channels = transformer.config.in_channels
        self.vae_scale_factor = vae_scale_factor(pipe.vae)
        self.size_multiple = self.vae_scale_factor * transformer.config.patch_size
        self.min_size = self.size_multiple * 2
        self.default_size = transformer.config.sample_size * self.vae_scale_factor
        self._use_defaults("sd3")

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> SD3Embeddings:
        embeds, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            num_images_per_prompt=num_images_per_prompt,
            do_classifier_free_guidance=True,
            negative_prompt=self._negatives(prompts, negative_prompts),
            max_sequence_length=self.max_sequence_length,
        )
        return SD3Embeddings(embeds, pooled, negative, negative_pooled)

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        patch = self.pipe.transformer.config.patch_size
        tokens = (height // self.vae_scale_factor // patch) * (width // self.vae_scale_factor // patch)
        return scheduler_sigmas(self.pipe.scheduler.config, num_steps, tokens)

    def velocity(self, latents: torch.Tensor, sigma: float, embeddings: SD3Embeddings, guidance: float) -> torch.Tensor:
        x = latents.to(self.dtype)
        embeds, pooled = embeddings.prompt_embeds, embeddings.pooled
        cfg = guidance > 1
        if cfg:
            x = torch.cat([x, x])
            embeds = torch.cat([embeddings.negative_embeds, embeds])
            pooled = torch.cat([embeddings.negative_pooled, pooled])
        timestep = torch.full((x.shape[0],), sigma * 1000, device=self.device, dtype=torch.float32)
        out = self.pipe.transformer(
            hidden_states=x,
            timestep=timestep,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0].to(torch.float32)
        if cfg:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_scaled(self.pipe.vae, latents)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return encode_scaled(self.pipe.vae, images)
