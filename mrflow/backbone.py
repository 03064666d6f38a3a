"""What the pipeline needs from a flow-matching backbone, whatever its family."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class Backbone(Protocol):
    """A pretrained flow-matching text-to-image model seen through one interface.

    Latents are spatial ``(B, C, h, w)`` tensors (``h = H / vae_scale_factor``); an adapter that
    needs another layout (FLUX packs 2×2 patches into tokens) converts inside :meth:`velocity`.
    Images cross the VAE boundary as ``(B, 3, H, W)`` float in [-1, 1].

    Attributes:
        family: short family name, e.g. ``"flux"`` or ``"sd3"``.
        source: the hub id or folder the weights came from.
        device: where the models run.
        dtype: the transformer's compute dtype.
        latent_channels: ``C`` of the spatial latents.
        vae_scale_factor: image pixels per latent pixel along one side.
        size_multiple: image sides must be multiples of this.
        min_size: smallest image side (pixels) the model accepts.
        default_steps: the family's usual step count for native sampling.
        default_guidance: the family's usual guidance value.
        default_size: the side (pixels) the family generates at when none is given.
        uses_negative_prompt: whether guidance uses a negative prompt (true CFG).
    """

    family: str
    source: str
    device: torch.device
    dtype: torch.dtype
    latent_channels: int
    vae_scale_factor: int
    size_multiple: int
    min_size: int
    default_steps: int
    default_guidance: float
    default_size: int
    uses_negative_prompt: bool

    def encode_prompt(
        self,
        prompts: list[str],
        negative_prompts: list[str] | None,
        num_images_per_prompt: int,
        guidance: float,
    ) -> Any:
        """Encode the prompts once; the result is passed back unchanged to :meth:`velocity`.

        The batch order is each prompt repeated ``num_images_per_prompt`` times in a row.
        """
        ...

    def native_sigmas(self, num_steps: int, height: int, width: int) -> torch.Tensor:
        """The family's own schedule for an ``height × width`` image: ``num_steps + 1`` σ ending in 0."""
        ...

    def velocity(self, latents: torch.Tensor, sigma: float, embeddings: Any, guidance: float) -> torch.Tensor:
        """Guided velocity ``v ≈ ε − x0`` at noise level σ for float32 latents ``(B, C, h, w)``."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, C, h, w)`` → images ``(B, 3, H, W)`` in [-1, 1] (not clamped)."""
        ...

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in [-1, 1] → latents ``(B, C, h, w)`` float32 (posterior mean)."""
        ...

    def to(self, device: torch.device | str) -> Backbone: ...
