"""FLUX.2 Klein (base and distilled) through diffusers' ``Flux2KleinPipeline``.

Family facts (diffusers 0.42): the VAE (``AutoencoderKLFlux2``, factor 8, 32 channels) is followed by
a 2×2 patchify to ``(B, 128, H/16, W/16)`` and a per-channel batch-norm normalisation
``z = (patches − running_mean) / sqrt(running_var + eps)``; noise is drawn in that patchified space, so
this adapter's spatial latents are the patchified ones (``vae_scale_factor`` 16, sides multiples of
16) and packing is a plain flatten to ``(B, h·w, 128)`` with 4-D position ids ``(t, h, w, l)``. The
text encoder is Qwen3 (hidden states of layers 9, 18 and 27 stacked on the chat-formatted prompt);
the transformer is queried at timestep σ. The schedule is ``linspace(1, 1/N, N)`` shifted with an
empirical μ that depends on the token count *and* on N. Base models use true CFG (scale 4.0, on
when > 1) against an empty negative prompt; distilled models (``is_distilled``) run 4 steps without.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import Flux2KleinPipeline

from mrflow.pipelines.common import PipelineBackbone, cfg_combine, linspace_sigmas, scheduler_sigmas

logger = logging.getLogger(__name__)

# Klein's empirical μ: two lines in the token count, for 10 and for 200 steps, interpolated
# linearly in the step count; above 4300 tokens only the 200-step line is used.
_MU_10_STEPS = (8.73809524e-05, 1.89833333)
_MU_200_STEPS = (0.00016927, 0.45666666)
_MU_LARGE_TOKENS = 4300


def empirical_mu(num_tokens: int, num_steps: int) -> float:
    """The dynamic shift μ FLUX.2 Klein uses for ``num_tokens`` image tokens and ``num_steps`` steps."""
    at_200 = _MU_200_STEPS[0] * num_tokens + _MU_200_STEPS[1]
    if num_tokens > _MU_LARGE_TOKENS:
        return float(at_200)
    at_10 = _MU_10_STEPS[0] * num_tokens + _MU_10_STEPS[1]
    slope = (at_200 - at_10) / 190.0
    return float(at_200 + slope * (num_steps - 200))


@dataclass
class Flux2Embeddings:
    """Stacked Qwen3 hidden states ``(B, L, 3·D)`` and their position ids ``(B, L, 4)``."""

    prompt_embeds: torch.Tensor
    text_ids: torch.Tensor
    negative: Flux2Embeddings | None = None


class Flux2KleinBackbone(PipelineBackbone):
    """Adapter of a diffusers ``Flux2KleinPipeline`` to :class:`mrflow.backbone.Backbone`.

    Args:
        pipe: a loaded ``Flux2KleinPipeline``; its ``is_distilled`` config picks the variant.
        source: where it came from, for reports.
        max_sequence_length: text tokens per prompt (padded to this length, as diffusers does).
        text_encoder_out_layers: the Qwen3 hidden-state layers stacked into the text embedding.
    """

    pipeline_class = Flux2KleinPipeline
    family = "flux2"

    def __init__(
        self,
        pipe: Flux2KleinPipeline,
        source: str = "",
        max_sequence_length: int = 512,
        text_encoder_out_layers: Sequence[int] = (9, 18, 27),
    ) -> None:
        self.pipe = pipe
        self.source = source
        self.max_sequence_length = max_sequence_length
        self.text_encoder_out_layers = tuple(text_encoder_out_layers)
        self.distilled = bool(pipe.config.is_distilled)
        self.uses_negative_prompt = not self.distilled
        self.latent_channels = pipe.transformer.config.in_channels
        self.vae_scale_factor = pipe.vae_scale_factor * 2
        self.size_multiple = self.vae_scale_factor
        self.min_size = self.size_multiple * 2
        self.default_size = pipe.default_sample_size * pipe.vae_scale_factor
        self._use_defaults("flux2-klein-distilled" if self.distilled else "flux2-klein")

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> Flux2Embeddings:
        def encode(texts: list[str]) -> Flux2Embeddings:
            embeds, text_ids = self.pipe.encode_prompt(
                prompt=texts,
                device=self.device,
                num_images_per_prompt=num_images_per_prompt,
                max_sequence_length=self.max_sequence_length,
                text_encoder_out_layers=self.text_encoder_out_layers,
            )
            return Flux2Embeddings(embeds.to(self.dtype), text_ids)

        embeddings = encode(prompts)
        if self._cfg(guidance):
            embeddings.negative = encode(self._negatives(prompts, negative_prompts))
        return embeddings

    def _cfg(self, guidance: float) -> bool:
        return guidance > 1 and not self.distilled

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        tokens = (height // self.size_multiple) * (width // self.size_multiple)
        mu = empirical_mu(tokens, num_steps)
        return scheduler_sigmas(self.pipe.scheduler.config, num_steps, tokens, linspace_sigmas(num_steps), mu=mu)

    def _transformer(self, tokens: torch.Tensor, sigma: float, emb: Flux2Embeddings, ids: torch.Tensor) -> torch.Tensor:
        timestep = torch.full((tokens.shape[0],), sigma, device=self.device, dtype=tokens.dtype)
        return self.pipe.transformer(
            hidden_states=tokens,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=emb.prompt_embeds,
            txt_ids=emb.text_ids,
            img_ids=ids,
            return_dict=False,
        )[0]

    def velocity(
        self, latents: torch.Tensor, sigma: float, embeddings: Flux2Embeddings, guidance: float
    ) -> torch.Tensor:
        """Guided velocity for patchified latents ``(B, C, h, w)``, flattened to tokens ``(B, h·w, C)``."""
        b, c, h, w = latents.shape
        x = latents.to(self.dtype)
        ids = Flux2KleinPipeline._prepare_latent_ids(x).to(self.device)
        tokens = x.reshape(b, c, h * w).permute(0, 2, 1)
        out = self._transformer(tokens, sigma, embeddings, ids)
        if embeddings.negative is not None and self._cfg(guidance):
            out = cfg_combine(out, self._transformer(tokens, sigma, embeddings.negative, ids), guidance)
        return out.permute(0, 2, 1).reshape(b, c, h, w).to(torch.float32)

    def _bn_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.pipe.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Patchified latents ``(B, 4·C_vae, h, w)`` → images ``(B, 3, 16h, 16w)`` in [-1, 1]."""
        vae = self.pipe.vae
        mean, std = self._bn_stats(latents)
        patches = latents * std + mean
        return vae.decode(Flux2KleinPipeline._unpatchify_latents(patches).to(vae.dtype), return_dict=False)[0]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] → normalised patchified posterior-mean latents, float32."""
        vae = self.pipe.vae
        z = vae.encode(images.to(vae.dtype)).latent_dist.mode()
        patches = Flux2KleinPipeline._patchify_latents(z)
        mean, std = self._bn_stats(patches)
        return ((patches - mean) / std).to(torch.float32)
