"""Qwen-Image through diffusers' ``QwenImagePipeline``.

Family facts (diffusers 0.42): a one-frame 3D VAE (``AutoencoderKLQwenImage``, factor 8) whose
latents ``(B, 16, 1, H/8, W/8)`` are normalised per channel, ``z = (μ − latents_mean) / latents_std``;
the transformer takes 2×2 patches packed into tokens ``(B, H/16·W/16, 64)``, so sides are multiples
of 16, and is queried at timestep σ (not σ·1000). The schedule is ``linspace(1, 1/N, N)`` shifted
exponentially with μ linear in tokens (0.5..0.9 over 256..8192) and stretched to the terminal σ 0.02.
Guidance is true CFG (``true_cfg_scale``, default 4.0) against the negative prompt " ", and the guided
prediction is rescaled per token to the norm of the conditional one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from diffusers import QwenImagePipeline

from mrflow.pipelines.common import PipelineBackbone, cfg_combine, linspace_sigmas, scheduler_sigmas

logger = logging.getLogger(__name__)


@dataclass
class QwenImageEmbeddings:
    """Text states ``(B, L, D)`` with their mask ``(B, L)`` (``None`` when no token is padding)."""

    prompt_embeds: torch.Tensor
    mask: torch.Tensor | None
    negative: QwenImageEmbeddings | None = None


def renormalized_cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Qwen-Image's CFG: ``uncond + s·(cond − uncond)`` rescaled per token to ``‖cond‖``.

    Args:
        cond, uncond: packed predictions ``(B, tokens, C·4)``; the norm is over the last dimension.
    """
    guided = cfg_combine(cond, uncond, scale)
    return guided * (cond.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))


class QwenImageBackbone(PipelineBackbone):
    """Adapter of a diffusers ``QwenImagePipeline`` to :class:`mrflow.backbone.Backbone`.

    The guidance value is the true-CFG scale; CFG runs when it is above 1 (two transformer passes,
    as diffusers does, since prompt and negative prompt differ in length).

    Args:
        pipe: a loaded ``QwenImagePipeline``.
        source: where it came from, for reports.
        max_sequence_length: text tokens kept per prompt (diffusers' default 512).
    """

    pipeline_class = QwenImagePipeline
    family = "qwenimage"
    uses_negative_prompt = True

    def __init__(self, pipe: QwenImagePipeline, source: str = "", max_sequence_length: int = 512) -> None:
        self.pipe = pipe
        self.source = source
        self.max_sequence_length = max_sequence_length
        if pipe.transformer.config.guidance_embeds:
            raise ValueError("guidance-embedding Qwen-Image transformers are not supported (Qwen-Image has none)")
        self.latent_channels = pipe.vae.config.z_dim
        self.vae_scale_factor = 2 ** len(pipe.vae.temperal_downsample)
        self.size_multiple = self.vae_scale_factor * 2
        self.min_size = self.size_multiple * 2
        self.default_size = pipe.default_sample_size * self.vae_scale_factor
        self._use_defaults("qwenimage")

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> QwenImageEmbeddings:
        def encode(texts: list[str]) -> QwenImageEmbeddings:
            embeds, mask = self.pipe.encode_prompt(
                prompt=texts,
                device=self.device,
                num_images_per_prompt=num_images_per_prompt,
                max_sequence_length=self.max_sequence_length,
            )
            return QwenImageEmbeddings(embeds.to(self.dtype), mask)

        embeddings = encode(prompts)
        if guidance > 1:
            embeddings.negative = encode(self._negatives(prompts, negative_prompts))
        return embeddings

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        tokens = (height // self.size_multiple) * (width // self.size_multiple)
        return scheduler_sigmas(self.pipe.scheduler.config, num_steps, tokens, linspace_sigmas(num_steps))

    def _transformer(
        self, packed: torch.Tensor, sigma: float, emb: QwenImageEmbeddings, h: int, w: int
    ) -> torch.Tensor:
        timestep = torch.full((packed.shape[0],), sigma, device=self.device, dtype=packed.dtype)
        return self.pipe.transformer(
            hidden_states=packed,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states_mask=emb.mask,
            encoder_hidden_states=emb.prompt_embeds,
            img_shapes=[[(1, h // 2, w // 2)]] * packed.shape[0],
            return_dict=False,
        )[0]

    def velocity(
        self, latents: torch.Tensor, sigma: float, embeddings: QwenImageEmbeddings, guidance: float
    ) -> torch.Tensor:
        """Guided velocity for latents ``(B, C, h, w)``; packing and CFG happen on tokens."""
        b, c, h, w = latents.shape
        packed = QwenImagePipeline._pack_latents(latents.to(self.dtype), b, c, h, w)
        out = self._transformer(packed, sigma, embeddings, h, w)
        if embeddings.negative is not None:
            negative = self._transformer(packed, sigma, embeddings.negative, h, w)
            out = renormalized_cfg(out, negative, guidance)
        size = (h * self.vae_scale_factor, w * self.vae_scale_factor)
        unpacked = QwenImagePipeline._unpack_latents(out, size[0], size[1], self.vae_scale_factor)
        return unpacked[:, :, 0].to(torch.float32)

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.pipe.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(like.device, like.dtype)
        std = torch.tensor(config.latents_std).view(shape).to(like.device, like.dtype)
        return mean, std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` → images ``(B, 3, H, W)`` in [-1, 1] through the one-frame VAE."""
        vae = self.pipe.vae
        z = latents.unsqueeze(2).to(vae.dtype)
        mean, std = self._latent_stats(z)
        return vae.decode(z * std + mean, return_dict=False)[0][:, :, 0]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] → normalised posterior-mean latents ``(B, C, h, w)`` float32."""
        vae = self.pipe.vae
        z = vae.encode(images.unsqueeze(2).to(vae.dtype)).latent_dist.mode()
        mean, std = self._latent_stats(z)
        return ((z - mean) / std)[:, :, 0].to(torch.float32)
