"""The embedded default model (``mrflow/weights/tiny``), trained by this project.

Family facts: pixel space, no autoencoder: the "latents" are the RGB images ``(B, 3, H, W)`` in
[-1, 1] (``vae_scale_factor`` 1; decode and encode are the identity). A small ``SD3Transformer2DModel``
with 16×16-pixel patches, so sides are multiples of 16 and at least 64, predicts the clean image x̂0
at timestep σ·1000; the velocity is ``(x_σ − x̂0)/σ``. Text from frozen all-MiniLM-L6-v2 (token
states + mean-pooled vector) loaded from its wheel; true classifier-free guidance against the empty
caption (or a negative prompt); the scheduler's default grid with its static shift. Trained at 64²,
128² and 256²; 256² is the default size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

from mrflow.pipelines.common import default_dtype, resolve_device, scheduler_sigmas
from mrflow.tiny.models import read_text_config
from mrflow.tiny.text import MiniLMEncoder, TextEmbeddings
from mrflow.tiny.training import predict_sample

logger = logging.getLogger(__name__)


class TinyEmbeddings:
    """Conditional and (when guided) unconditional embeddings, CFG branches stacked uncond-first."""

    def __init__(self, cond: TextEmbeddings, uncond: TextEmbeddings | None) -> None:
        self.cond = cond
        self.uncond = uncond


class TinyBackbone:
    """Adapter of the embedded model to :class:`mrflow.backbone.Backbone`.

    Args:
        transformer, scheduler: the diffusers components of the model folder.
        text_encoder: the frozen MiniLM encoder.
        source: where the weights came from, for reports.
    """

    family = "tiny"
    uses_negative_prompt = True
    default_size = 256
    default_steps = 28
    default_guidance = 4.0

    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        text_encoder: MiniLMEncoder,
        source: str = "",
    ) -> None:
        self.transformer = transformer.eval()
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.source = source
        self.latent_channels = int(transformer.config.in_channels)
        self.vae_scale_factor = 1  # pixel space
        self.size_multiple = int(transformer.config.patch_size)
        self.min_size = 64  # the smallest training size (4×4 patches)

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> TinyBackbone:
        """Load a model folder (``model_index.json`` + ``transformer/``, ``scheduler/``).

        fp32 is the default on the CPU (the model is small and was trained in fp32); ``dtype``
        applies to the transformer.
        """
        if kwargs:
            raise ValueError(f"unexpected options for the tiny backbone: {sorted(kwargs)}")
        device = resolve_device(device)
        dtype = dtype or (torch.float32 if device.type == "cpu" else default_dtype(device))
        folder = str(source)
        transformer = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer", dtype=dtype)
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
        text_encoder = MiniLMEncoder(read_text_config(folder), device=device)
        logger.info("loaded tiny model from %s (%s, %s)", folder, device, dtype)
        return cls(transformer.to(device), scheduler, text_encoder, source=folder)

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    def to(self, device: torch.device | str) -> TinyBackbone:
        self.transformer.to(device)
        self.text_encoder.to(device)
        return self

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> TinyEmbeddings:
        """MiniLM states for each prompt, repeated per image; the negative (default ``""``) when guided."""
        cond = self.text_encoder(prompts).to(self.device, self.dtype)
        cond = cond[torch.arange(len(prompts)).repeat_interleave(num_images_per_prompt)]
        uncond = None
        if guidance > 1:
            negatives = negative_prompts or [""] * len(prompts)
            uncond = self.text_encoder(negatives).to(self.device, self.dtype)
            uncond = uncond[torch.arange(len(prompts)).repeat_interleave(num_images_per_prompt)]
        return TinyEmbeddings(cond, uncond)

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        patch = int(self.transformer.config.patch_size)
        tokens = (height // patch) * (width // patch)
        return scheduler_sigmas(self.scheduler.config, num_steps, tokens)

    def velocity(
        self, latents: torch.Tensor, sigma: float, embeddings: TinyEmbeddings, guidance: float
    ) -> torch.Tensor:
        """Guided ``v = (x_σ − x̂0)/σ`` for images ``(B, 3, H, W)``; CFG mixes the two velocities."""
        if not 0 < sigma <= 1:
            raise ValueError(f"sigma must be in (0, 1] for a clean-image-predicting model, got {sigma!r}")
        x = latents.to(self.dtype)
        text = embeddings.cond
        cfg = guidance > 1 and embeddings.uncond is not None
        if cfg:
            x = torch.cat([x, x])
            text = TextEmbeddings.cat([embeddings.uncond, text])  # type: ignore[list-item]
        sigmas = torch.full((x.shape[0],), sigma, device=self.device, dtype=torch.float32)
        sample = predict_sample(self.transformer, x, sigmas, text).to(torch.float32)
        out = (x.to(torch.float32) - sample) / sigma
        if cfg:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixel space: the state is the image in [-1, 1] already."""
        return latents

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32)
