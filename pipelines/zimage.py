"""Z-Image and Z-Image-Turbo through diffusers' ``ZImagePipeline``.

Family facts (diffusers 0.42): FLUX.1's VAE (``AutoencoderKL``, factor 8, scaling 0.3611 / shift
0.1159) with latents ``(B, 16, H/8, W/8)``; the transformer patchifies 2×2 itself, so sides are
multiples of 16. It takes a *list* of per-image latents ``(C, 1, h, w)`` and a list of per-prompt text
states of their own length (a Qwen3 encoder's second-to-last hidden states of the chat-formatted
prompt, padding dropped). Two conventions differ from other flow models: the transformer is queried
at ``t = 1 − σ`` (``(1000 − σ·1000)/1000``) and it predicts the *negated* velocity. CFG is
``pos + g·(pos − neg)``, on when ``g > 0``, optionally truncated (no CFG where ``1 − σ`` exceeds
``cfg_truncation``) and norm-capped (``cfg_normalization``). Turbo is distilled for 8 steps at
guidance 0; the schedule is ``linspace(1, 1/N, N)`` with the scheduler's static shift.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from diffusers import ZImagePipeline

from mrflow.pipelines.common import (
    PipelineBackbone,
    decode_scaled,
    encode_scaled,
    linspace_sigmas,
    scheduler_sigmas,
    vae_scale_factor,
)

logger = logging.getLogger(__name__)


@dataclass
class ZImageEmbeddings:
    """One text-state tensor ``(L_i, D)`` per image (prompt order, repeated per image)."""

    prompt_embeds: list[torch.Tensor]
    negative: list[torch.Tensor] | None = None


def zimage_cfg(pos: torch.Tensor, neg: torch.Tensor, scale: float, max_norm_ratio: float) -> torch.Tensor:
    """Z-Image's guidance for one image: ``pos + s·(pos − neg)``, norm capped at ``ratio·‖pos‖`` if > 0."""
    guided = pos + scale * (pos - neg)
    if max_norm_ratio > 0:
        limit = torch.linalg.vector_norm(pos) * max_norm_ratio
        norm = torch.linalg.vector_norm(guided)
        if norm > limit:
            guided = guided * (limit / norm)
    return guided


class ZImageBackbone(PipelineBackbone):
    """Adapter of a diffusers ``ZImagePipeline`` (Z-Image base or Turbo) to :class:`mrflow.backbone.Backbone`.

    Args:
        pipe: a loaded ``ZImagePipeline``.
        source: where it came from; a name containing "turbo" selects the Turbo defaults.
        turbo: force the Turbo (``True``) or base (``False``) defaults: 8 steps at guidance 0, or
            50 steps at CFG 5.0. The two share one pipeline class, so the folder cannot tell.
        cfg_normalization: cap of ``‖guided‖ / ‖pos‖`` (0 = off, diffusers' default).
        cfg_truncation: CFG only while ``1 − σ <= cfg_truncation`` (1.0 = always, the default).
        max_sequence_length: text tokens per prompt before padding is dropped.
    """

    pipeline_class = ZImagePipeline
    family = "zimage"

    def __init__(
        self,
        pipe: ZImagePipeline,
        source: str = "",
        turbo: bool | None = None,
        cfg_normalization: float = 0.0,
        cfg_truncation: float = 1.0,
        max_sequence_length: int = 512,
    ) -> None:
        self.pipe = pipe
        self.source = source
        self.turbo = "turbo" in source.lower() if turbo is None else bool(turbo)
        self.cfg_normalization = float(cfg_normalization)
        self.cfg_truncation = float(cfg_truncation)
        self.max_sequence_length = max_sequence_length
        self.uses_negative_prompt = not self.turbo
        self.latent_channels = pipe.transformer.in_channels
        self.vae_scale_factor = vae_scale_factor(pipe.vae)
        self.size_multiple = self.vae_scale_factor * 2
        self.min_size = self.size_multiple * 2
        self.default_size = 128 * self.vae_scale_factor
        self._use_defaults("zimage-turbo" if self.turbo else "zimage")
        logger.info("Z-Image variant: %s", self.variant)

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> ZImageEmbeddings:
        def encode(texts: list[str]) -> list[torch.Tensor]:
            per_prompt = self.pipe.encode_prompt(
                prompt=list(texts),
                device=self.device,
                do_classifier_free_guidance=False,
                max_sequence_length=self.max_sequence_length,
            )[0]
            return [e.to(self.dtype) for e in per_prompt for _ in range(num_images_per_prompt)]

        embeddings = ZImageEmbeddings(encode(prompts))
        if guidance > 0:
            embeddings.negative = encode(self._negatives(prompts, negative_prompts))
        return embeddings

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        tokens = (height // self.size_multiple) * (width // self.size_multiple)
        return scheduler_sigmas(self.pipe.scheduler.config, num_steps, tokens, linspace_sigmas(num_steps))

    def velocity(
        self, latents: torch.Tensor, sigma: float, embeddings: ZImageEmbeddings, guidance: float
    ) -> torch.Tensor:
        """Velocity ``ε − x0`` for latents ``(B, C, h, w)``: the model's output, negated, at ``t = 1 − σ``."""
        batch = latents.shape[0]
        t = torch.full((batch,), sigma, dtype=torch.float32, device=self.device) * 1000
        timestep = (1000 - t) / 1000
        cfg = embeddings.negative is not None and guidance > 0 and float(timestep[0]) <= self.cfg_truncation
        x = latents.to(self.dtype)
        texts = embeddings.prompt_embeds
        if cfg:
            assert embeddings.negative is not None
            x, texts, timestep = torch.cat([x, x]), texts + embeddings.negative, timestep.repeat(2)
        outputs = self.pipe.transformer(list(x.unsqueeze(2).unbind(0)), timestep, texts, return_dict=False)[0]
        outputs = [o.float() for o in outputs]
        if cfg:
            pos, neg = outputs[:batch], outputs[batch:]
            outputs = [zimage_cfg(p, n, guidance, self.cfg_normalization) for p, n in zip(pos, neg, strict=True)]
        return -torch.stack(outputs).squeeze(2)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return decode_scaled(self.pipe.vae, latents)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return encode_scaled(self.pipe.vae, images)
