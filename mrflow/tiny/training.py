"""The training objective of the embedded model: rectified flow with a preconditioned denoiser.

σ convention as everywhere in mrflow: σ = 1 is pure noise, σ = 0 is data; the path is
``x_σ = (1 − σ)·x0 + σ·ε`` and the velocity is ``v = ε − x0 = (x_σ − x̂0)/σ``.

The UNet F is wrapped as in EDM (Karras et al. 2022), rewritten for the rectified-flow path: with
``a = 1 − σ`` and data std ``σ_d`` (:data:`SIGMA_DATA`),

    x̂0 = c_skip·x_σ + c_out·F(c_in·x_σ, σ·1000),
    c_in = 1/√(a²σ_d² + σ²),  c_skip = aσ_d²/(a²σ_d² + σ²),  c_out = σσ_d/√(a²σ_d² + σ²),

and trained on ``‖F − (x0 − c_skip·x_σ)/c_out‖²``, whose target has unit variance at every σ. Near
σ = 0 the skip passes the input through, near σ = 1 the network predicts the image itself, so
neither end asks the network to copy noise. (Plain velocity prediction does ask it, at σ ≈ 1, and a
first run with it still sampled pure noise after 400 steps on this CPU.)

Resolution shift: in pixel space a 256² image keeps its layout visible under far more noise than a
64² one (an object covers 16× more pixels, so its signal-to-noise ratio summed over the object is 4×
higher). Training σ is therefore shifted per size, ``σ' = sσ / (1 + (s − 1)σ)``, with the same
shift ``s = exp(μ(tokens))`` the scheduler applies when sampling at that size; otherwise little
training lands at σ > 0.9, where a 256² layout is decided.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

from mrflow.flow.schedules import static_shift
from mrflow.tiny.text import TextEmbeddings

TIMESTEP_SCALE = 1000.0  # the UNet sees t = σ·1000, as diffusers' flow-matching pipelines feed it
SIGMA_DATA = 0.6  # standard deviation of the training pixels in [-1, 1] (measured: 0.59)


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


def sample_sigmas(
    count: int, sampling: SigmaSampling, generator: torch.Generator, shift: float = 1.0
) -> torch.Tensor:
    """``(count,)`` float32 σ in (0, 1) drawn from the mixture on a CPU generator.

    ``shift`` (≥ 1 moves mass to high noise) applies to the logit-normal and uniform components, not
    to the refine range, which is an explicit true σ in staged sampling.
    """
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    weights = torch.tensor([sampling.logit_normal, sampling.uniform, sampling.refine], dtype=torch.float64)
    which = torch.multinomial(weights, count, replacement=True, generator=generator)
    logit_normal = static_shift(torch.sigmoid(torch.randn(count, generator=generator)), shift)
    uniform = static_shift(torch.rand(count, generator=generator), shift)
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


def preconditioning(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_in, c_skip, c_out)`` for per-sample σ, shaped like ``sigmas``."""
    a = 1 - sigmas
    variance = (a * SIGMA_DATA) ** 2 + sigmas**2
    c_in = variance.rsqrt()
    return c_in, a * SIGMA_DATA**2 / variance, sigmas * SIGMA_DATA * c_in


def _network(
    unet: UNet2DConditionModel, latents: torch.Tensor, sigmas: torch.Tensor, text: TextEmbeddings
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(F, c_skip, c_out)``: the raw UNet output on the scaled input, and the σ factors ``(B, 1, 1, 1)``."""
    c_in, c_skip, c_out = (c.to(latents.dtype)[:, None, None, None] for c in preconditioning(sigmas.float()))
    raw = unet(
        latents * c_in,
        sigmas * TIMESTEP_SCALE,
        encoder_hidden_states=text.tokens,
        class_labels=text.pooled,
        return_dict=False,
    )[0]
    return raw, c_skip, c_out


def predict_sample(
    unet: UNet2DConditionModel, latents: torch.Tensor, sigmas: torch.Tensor, text: TextEmbeddings
) -> torch.Tensor:
    """The denoised latents x̂0 for noisy folded latents ``(B, 48, h, w)`` at per-sample σ ``(B,)``."""
    raw, c_skip, c_out = _network(unet, latents, sigmas, text)
    return c_skip * latents + c_out * raw


def flow_loss(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    text: TextEmbeddings,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Preconditioned denoising loss ``‖F − (x0 − c_skip·x_σ)/c_out‖²`` for clean latents ``(B, 48, h, w)``."""
    s = sigmas.to(latents.device, latents.dtype)
    noisy = (1 - s[:, None, None, None]) * latents + s[:, None, None, None] * noise
    raw, c_skip, c_out = _network(unet, noisy, s, text)
    target = (latents - c_skip * noisy) / c_out
    return F.mse_loss(raw.float(), target.float())
