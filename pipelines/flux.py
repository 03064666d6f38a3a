"""FLUX.1 (dev and schnell) through diffusers' ``FluxPipeline``.

Family facts: latents ``(B, 16, H/8, W/8)`` are packed into 2×2 patches, so image sides are
multiples of 16; the schedule is ``linspace(1, 1/N, N)`` shifted exponentially with μ linear in
the packed token count; dev embeds a distilled guidance value (default 3.5), schnell has none
(guidance 0, 4 steps); defaults come from ``configs/flux-dev.toml`` / ``configs/flux-schnell.toml``.
True CFG with a negative prompt is optional (``true_cfg_scale > 1``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import FluxPipeline

from mrflow.pipelines.common import (
    PipelineBackbone,
    decode_scaled,
    encode_scaled,
    scheduler_sigmas,
    vae_scale_factor,
)

logger = logging.getLogger(__name__)


@dataclass
class FluxEmbeddings:
    prompt_embeds: torch.Tensor
    pooled: torch.Tensor
    text_ids: torch.Tensor
    negative: FluxEmbeddings | None = None


class FluxBackbone(PipelineBackbone):
    """Adapter of a diffusers ``FluxPipeline`` to :class:`mrflow.backbone.Backbone`.

    Args:
        pipe: a loaded ``FluxPipeline`` (its components are used as they are).
        source: where it came from, for reports.
        true_cfg_scale: > 1 enables true classifier-free guidance with a negative prompt, on top
            of the distilled guidance embedding (twice the transformer cost).
        max_sequence_length: T5 tokens per prompt.
    """

    pipeline_class = FluxPipeline
    family = "flux"
    uses_negative_prompt: bool

    def __init__(
        self,
        pipe: FluxPipeline,
        source: str = "",
        true_cfg_scale: float = 1.0,
        max_sequence_length: int = 512,
    ) -> None:
        self.pipe = pipe
        self.source = source
        self.true_cfg_scale = float(true_cfg_scale)
        self.max_sequence_length = max_sequence_length
        transformer = pipe.transformer
        self.guidance_embeds = bool(transformer.config.guidance_embeds)
        self.uses_negative_prompt = self.true_cfg_scale > 1
        self.latent_channels = transformer.config.in_channels // 4
        self.vae_scale_factor = vae_scale_factor(pipe.vae)
        self.size_multiple = self.vae_scale_factor * 2
        self.min_size = self.size_multiple * 2
        self.default_size = 128 * self.vae_scale_factor
        # dev embeds a distilled guidance value; schnell (timestep-distilled, 4 steps) has none.
        variant = "flux-dev" if self.guidance_embeds else "flux-schnell"
        self._use_defaults(variant)
        self._image_ids: dict[tuple[int, int], torch.Tensor] = {}

    def to(self, device: torch.device | str) -> FluxBackbone:
        super().to(device)
        self._image_ids.clear()
        return self

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> FluxEmbeddings:
        def encode(texts: list[str]) -> FluxEmbeddings:
            embeds, pooled, text_ids = self.pipe.encode_prompt(
                prompt=texts,
                prompt_2=None,
                device=self.device,
                num_images_per_prompt=num_images_per_prompt,
                max_sequence_length=self.max_sequence_length,
            )
            return FluxEmbeddings(embeds.to(self.dtype), pooled.to(self.dtype), text_ids)

        embeddings = encode(prompts)
        if self.true_cfg_scale > 1:
            embeddings.negative = encode(negative_prompts or [""] * len(prompts))
        return embeddings

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        tokens = (height // self.size_multiple) * (width // self.size_multiple)
        base = torch.from_numpy(np.linspace(1.0, 1.0 / num_steps, num_steps))
        return scheduler_sigmas(self.pipe.scheduler.config, num_steps, tokens, base)

    def _ids(self, h: int, w: int) -> torch.Tensor:
        if (h, w) not in self._image_ids:
            self._image_ids[(h, w)] = FluxPipeline._prepare_latent_image_ids(1, h // 2, w // 2, self.device, self.dtype)
        return self._image_ids[(h, w)]

    def _transformer(
        self,
        packed: torch.Tensor,
        sigma: float,
        emb: FluxEmbeddings,
        guidance: torch.Tensor | None,
        ids: torch.Tensor,
    ) -> torch.Tensor:
        timestep = torch.full((packed.shape[0],), sigma, device=self.device, dtype=self.dtype)
        return self.pipe.transformer(
            hidden_states=packed,
            timestep=timestep,
            guidance=guidance,
            pooled_projections=emb.pooled,
            encoder_hidden_states=emb.prompt_embeds,
            txt_ids=emb.text_ids,
            img_ids=ids,
            return_dict=False,
        )[0]

    def velocity(
        self, latents: torch.Tensor, sigma: float, embeddings: FluxEmbeddings, guidance: float
    ) -> torch.Tensor:
        b, c, h, w = latents.shape
        packed = FluxPipeline._pack_latents(latents.to(self.dtype), b, c, h, w)
        guidance_vec = (
            torch.full((b,), guidance, device=self.device, dtype=torch.float32) if self.guidance_embeds else None
        )
        ids = self._ids(h, w)
        out = self._transformer(packed, sigma, embeddings, guidance_vec, ids)
        if embeddings.negative is not None:
            negative = self._transformer(packed, sigma, embeddings.negative, guidance_vec, ids)
            out = negative + self.true_cfg_scale * (out - negative)
        size = (h * self.vae_scale_factor, w * self.vae_scale_factor)
        return FluxPipeline._unpack_latents(out, size[0], size[1], self.vae_scale_factor).to(torch.float32)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_scaled(self.pipe.vae, latents)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return encode_scaled(self.pipe.vae, images)
