"""The training objective of the embedded model: rectified flow with clean-image prediction.

σ convention as everywhere in mrflow: σ = 1 is pure noise, σ = 0 is data; the path is
``x_σ = (1 − σ)·x0 + σ·ε`` and the velocity is ``v = ε − x0 = (x_σ − x0)/σ``. The transformer, fed
timestep σ·1000, predicts x̂0; its velocity ``v̂ = (x_σ − x̂0)/σ`` is regressed onto ``v`` with σ
floored at :data:`SIGMA_FLOOR` in the division, so the loss weight on x̂0, 1/σ², stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import SD3Transformer2DModel

from mrflow.tiny.text import TextEmbeddings

TIMESTEP_SCALE = 1000.0  # the transformer sees t = σ·1000, as diffusers' SD3 pipeline feeds it
SIGMA_FLOOR = 0.2  # training only: caps the 1/σ² weight of the image loss (≤ 25) so layout (high σ) is learned


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
            raise ValueError(f"need 0 <= refine_low < refine_high <= 1, got {self.refine_low}, {self.refine_high}")


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


def predict_sample(
    transformer: SD3Transformer2DModel, noisy: torch.Tensor, sigmas: torch.Tensor, text: TextEmbeddings
) -> torch.Tensor:
    """The transformer's clean-image prediction x̂0 for images ``(B, 3, H, W)`` at per-sample σ ``(B,)``."""
    return transformer(
        hidden_states=noisy,
        timestep=sigmas * TIMESTEP_SCALE,
        encoder_hidden_states=text.tokens,
        pooled_projections=text.pooled,
        return_dict=False,
    )[0]


def velocity_from_sample(noisy: torch.Tensor, sample: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """``v = (x_σ − x̂0)/σ`` for per-sample σ ``(B,)`` (σ > 0)."""
    return (noisy - sample) / sigmas.to(noisy.dtype)[:, None, None, None]


def flow_loss(
    transformer: SD3Transformer2DModel,
    images: torch.Tensor,
    text: TextEmbeddings,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Rectified-flow loss ``‖v̂ − (ε − x0)‖²`` for clean images ``(B, 3, H, W)`` in [-1, 1]."""
    s = sigmas.to(images.device, images.dtype)
    noisy = (1 - s[:, None, None, None]) * images + s[:, None, None, None] * noise
    sample = predict_sample(transformer, noisy, s, text).float()
    floored = s.clamp(min=SIGMA_FLOOR).float()
    # both sides divided by the floored σ: equals ‖ε − x0 − v̂‖² wherever σ ≥ SIGMA_FLOOR
    velocity = velocity_from_sample(noisy.float(), sample, floored)
    target = velocity_from_sample(noisy.float(), images.float(), floored)
    return F.mse_loss(velocity, target)
