"""The embedded default model (``mrflow/weights/tiny``), trained by this project.

Family facts: pixel space, no learned autoencoder: the latents are the RGB images in [-1, 1] with
each f×f block folded into channels, ``(B, 3f², H/f, W/f)`` (f = 4 for the shipped model, read from
the UNet's input channels; ``vae_scale_factor`` f; decode and
encode are exact reshapes). A small ``UNet2DConditionModel`` gives the clean image x̂0 at
timestep σ·1000 (directly, or as a correction to EDM's skip of the input when ``model_index.json``
says ``"prediction": "edm"``, the skip sized by its ``skip_data_std``: the shipped model) and the velocity is
``(x_σ − x̂0)/σ``; sides are multiples of 16 and at least 64.
Text from frozen all-MiniLM-L6-v2 (token states for cross-attention, the mean-pooled vector added
to the timestep embedding) loaded from its wheel; true classifier-free guidance against the empty
caption (or a negative prompt); the scheduler's default grid with a shift that grows with the
latent size (as FLUX's). Trained at 64², 128² and 256²; 256² is the default size. Default steps,
guidance and presets (``12plus1`` from 128², ``12plus1-x4`` from 64²) are in ``configs/tiny.toml``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel

from mrflow.config import backbone_defaults
from mrflow.pipelines.common import default_dtype, resolve_device, scheduler_sigmas
from mrflow.tiny.models import (
    DEFAULT_SIZE,
    SIGMA_DATA,
    check_prediction,
    check_skip_std,
    fold,
    fold_of_channels,
    read_model_index,
    size_multiple,
    unfold,
)
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
        unet, scheduler: the diffusers components of the model folder.
        text_encoder: the frozen MiniLM encoder.
        source: where the weights came from, for reports.
        prediction: what the UNet predicts (``model_index.json``'s ``prediction``).
        skip_std: the data std an ``"edm"`` prediction's skip is sized for (``skip_data_std``).
    """

    family = "tiny"
    variant = "tiny"  # steps, guidance and presets from configs/tiny.toml
    uses_negative_prompt = True
    default_size = DEFAULT_SIZE

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        text_encoder: MiniLMEncoder,
        source: str = "",
        prediction: str = "sample",
        skip_std: float = SIGMA_DATA,
    ) -> None:
        self.unet = unet.eval()
        self.prediction = check_prediction(prediction)
        self.skip_std = check_skip_std(skip_std)
        self.scheduler = scheduler
        self.text_encoder = text_encoder
        self.source = source
        defaults = backbone_defaults(self.variant)
        self.default_steps = defaults.steps
        self.default_guidance = defaults.guidance
        self.default_negative_prompt = defaults.negative_prompt or ""
        self.latent_channels = int(unet.config.in_channels)
        self.fold = fold_of_channels(self.latent_channels)
        self.vae_scale_factor = self.fold  # folded pixels
        self.size_multiple = size_multiple(unet.config.block_out_channels, self.fold)
        self.min_size = 64  # the smallest training size

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> TinyBackbone:
        """Load a model folder (``model_index.json`` + ``unet/``, ``scheduler/``).

        fp32 is the default on the CPU (the model was trained in fp32 and is stored in fp16);
        ``dtype`` applies to the UNet.
        """
        if kwargs:
            raise ValueError(f"unexpected options for the tiny backbone: {sorted(kwargs)}")
        device = resolve_device(device)
        dtype = dtype or (torch.float32 if device.type == "cpu" else default_dtype(device))
        folder = str(source)
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype)
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
        index = read_model_index(folder)
        if index.fold != fold_of_channels(unet.config.in_channels):
            raise ValueError(
                f"{folder}: model_index.json says fold {index.fold}, "
                f"but the UNet takes {unet.config.in_channels} channels"
            )
        text_encoder = MiniLMEncoder(index.text, device=device)
        logger.info("loaded tiny model from %s (%s, %s)", folder, device, dtype)
        return cls(
            unet.to(device),
            scheduler,
            text_encoder,
            source=folder,
            prediction=index.prediction,
            skip_std=index.skip_std,
        )

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def to(self, device: torch.device | str) -> TinyBackbone:
        self.unet.to(device)
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
            negatives = negative_prompts or [self.default_negative_prompt] * len(prompts)
            uncond = self.text_encoder(negatives).to(self.device, self.dtype)
            uncond = uncond[torch.arange(len(prompts)).repeat_interleave(num_images_per_prompt)]
        return TinyEmbeddings(cond, uncond)

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        tokens = (height // self.fold) * (width // self.fold)  # latent positions
        return scheduler_sigmas(self.scheduler.config, num_steps, tokens)

    def velocity(
        self, latents: torch.Tensor, sigma: float, embeddings: TinyEmbeddings, guidance: float
    ) -> torch.Tensor:
        """Guided ``v = (x_σ − x̂0)/σ`` for folded latents ``(B, 3f², h, w)``; CFG mixes the two velocities."""
        if not 0 < sigma <= 1:
            raise ValueError(f"sigma must be in (0, 1] for a model giving the clean image, got {sigma!r}")
        x = latents.to(self.dtype)
        text = embeddings.cond
        cfg = guidance > 1 and embeddings.uncond is not None
        if cfg:
            x = torch.cat([x, x])
            text = TextEmbeddings.cat([embeddings.uncond, text])  # type: ignore[list-item]
        sigmas = torch.full((x.shape[0],), sigma, device=self.device, dtype=torch.float32)
        sample = predict_sample(self.unet, x, sigmas, text, self.prediction, self.skip_std).to(torch.float32)
        out = (x.to(torch.float32) - sample) / sigma
        if cfg:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unfold the f×f blocks: images ``(B, 3, H, W)`` in [-1, 1]."""
        return unfold(latents.to(torch.float32), self.fold)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return fold(images.to(torch.float32), self.fold)
