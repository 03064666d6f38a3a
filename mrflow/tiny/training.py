"""Training objectives of the embedded model: rectified flow for the transformer, β-VAE for the autoencoder.

σ convention as everywhere in mrflow: σ = 1 is pure noise, σ = 0 is data; the path is
``x_σ = (1 − σ)·x0 + σ·ε`` and the transformer regresses the velocity ``v = ε − x0`` at timestep σ·1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, SD3Transformer2DModel

from mrflow.tiny.text import TextEmbeddings

TIMESTEP_SCALE = 1000.0  # the transformer sees t = σ·1000, as diffusers' SD3 pipeline feeds it


@dataclass(frozen=True)
class SigmaSampling:
    """Mixture of σ distributions for training.

    Attributes:
        logit_normal: weight of σ = sigmoid(N(0, 1)) (SD3's choice: most mass at mid noise).
        uniform: weight of σ ~ U(0, 1) (keeps the ends, σ ≈ 1 for layout and σ ≈ 0, covered).
        refine: weight of σ ~ U(refine_low, refine_high): the staged refine range.
    """

    logit_normal: float = 0.6
    uniform: float = 0.2
    refine: float = 0.2
    refine_low: float = 0.02
    refine_high: float = 0.35

    def __post_init__(self) -> None:
        weights = (self.logit_normal, self.uniform, self.refine)
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"mixture weights must be >= 0 and not all 0, got {weights}")
        if not 0 <= self.refine_low < self.refine_high <= 1:
            raise ValueError(
                f"need 0 <= refine_low < refine_high <= 1, got {self.refine_low}, {self.refine_high}"
            )


def sample_sigmas(count: int, sampling: SigmaSampling, generator: torch.Generator) -> torch.Tensor:
    """``(count,)`` float32 σ in (0, 1) drawn from the mixture on a CPU generator."""
    weights = torch.tensor([sampling.logit_normal, sampling.uniform, sampling.refine], dtype=torch.float64)
    which = torch.multinomial(weights, count, replacement=True, generator=generator)
    logit_normal = torch.sigmoid(torch.randn(count, generator=generator))
    uniform = torch.rand(count, generator=generator)
    span = sampling.refine_high - sampling.refine_low
    refine = sampling.refine_low + span * torch.rand(count, generator=generator)
    sigmas = torch.stack([logit_normal, uniform, refine], dim=1).gather(1, which[:, None]).squeeze(1)
    return sigmas.clamp(1e-4, 1 - 1e-4).float()


def drop_captions(
    text: TextEmbeddings, null: TextEmbeddings, probability: float, generator: torch.Generator
) -> TextEmbeddings:
    """Replace each caption's conditioning by the empty caption's with ``probability`` (for CFG).

    Args:
        text: ``B`` captions' embeddings.
        null: the embedding of ``""``, batch 1.
    """
    drop = (torch.rand(text.pooled.shape[0], generator=generator) < probability).to(text.pooled.device)
    tokens = torch.where(drop[:, None, None], null.tokens.expand_as(text.tokens), text.tokens)
    pooled = torch.where(drop[:, None], null.pooled.expand_as(text.pooled), text.pooled)
    return TextEmbeddings(tokens, pooled)


def predict_velocity(
    transformer: SD3Transformer2DModel, noisy: torch.Tensor, sigmas: torch.Tensor, text: TextEmbeddings
) -> torch.Tensor:
    """The transformer's velocity for latents ``(B, C, h, w)`` at per-sample σ ``(B,)``."""
    return transformer(
        hidden_states=noisy,
        timestep=sigmas * TIMESTEP_SCALE,
        encoder_hidden_states=text.tokens,
        pooled_projections=text.pooled,
        return_dict=False,
    )[0]


def flow_loss(
    transformer: SD3Transformer2DModel,
    latents: torch.Tensor,
    text: TextEmbeddings,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Rectified-flow loss ``‖v_θ(x_σ, σ, c) − (ε − x0)‖²`` for clean latents ``(B, C, h, w)``."""
    s = sigmas.to(latents.device, latents.dtype)[:, None, None, None]
    noisy = (1 - s) * latents + s * noise
    target = noise - latents
    prediction = predict_velocity(transformer, noisy, sigmas.to(latents.device), text)
    return F.mse_loss(prediction.float(), target.float())


@dataclass(frozen=True)
class VAELossWeights:
    l1: float = 1.0
    mse: float = 1.0
    edge: float = 0.5  # L1 on image gradients: keeps edges and fine texture sharp without a GAN
    kl: float = 1e-5  # small: nearly deterministic codes, yet a smooth, bounded latent


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def vae_loss(
    vae: AutoencoderKL,
    images: torch.Tensor,
    weights: VAELossWeights,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction + KL loss for images ``(B, 3, H, W)`` in [-1, 1].

    Returns:
        The scalar loss and its parts as floats (for logging).
    """
    posterior = vae.encode(images).latent_dist
    latents = posterior.sample(generator=generator)
    reconstruction = vae.decode(latents).sample
    l1 = (reconstruction - images).abs().mean()
    mse = F.mse_loss(reconstruction, images)
    (rx, ry), (ix, iy) = _gradients(reconstruction), _gradients(images)
    edge = (rx - ix).abs().mean() + (ry - iy).abs().mean()
    kl = posterior.kl().mean() / images[0].numel()
    loss = weights.l1 * l1 + weights.mse * mse + weights.edge * edge + weights.kl * kl
    parts = {
        name: float(value.detach()) for name, value in (("l1", l1), ("mse", mse), ("edge", edge), ("kl", kl))
    }
    return loss, parts


@torch.no_grad()
def latent_statistics(latents: torch.Tensor) -> tuple[float, float]:
    """``(shift_factor, scaling_factor)`` that give the latents ``(N, C, h, w)`` zero mean and unit std."""
    mean = float(latents.mean())
    std = float(latents.std())
    return mean, 1.0 / std
