"""The training objective of the embedded model: rectified flow, the UNet giving the clean image.

σ convention as everywhere in mrflow: σ = 1 is pure noise, σ = 0 is data; the path is
``x_σ = (1 − σ)·x0 + σ·ε`` and the velocity is ``v = ε − x0 = (x_σ − x̂0)/σ``.

The UNet F sees ``c_in·x_σ`` with ``c_in = 1/√((1 − σ)²σ_d² + σ²)`` (unit variance for data of std
``σ_d`` = :data:`SIGMA_DATA`) and the timestep σ·1000; ``prediction`` says how its output becomes x̂0:

* ``"sample"``: ``x̂0 = σ_d·F``; the loss is the velocity error ``‖v̂ − v‖² = ‖x̂0 − x0‖²/σ²`` with
  σ floored at :data:`SIGMA_FLOOR` in the division, so the weight on the image error stays bounded.
* ``"edm"``: ``x̂0 = c_skip·x_σ + c_out·F`` (:func:`skip_scales`), the skip sized for a data std
  ``skip_std``; the loss is ``‖x̂0 − x0‖²/σ²``, bounded because ``c_out`` shrinks with σ.

What each costs, measured on this model (``scripts/denoise_error.py``): clean images lie on a
low-dimensional set and noise does not, so a small UNet trained briefly outputs smooth images under
image prediction (velocity or noise prediction still sampled pure noise after 400 steps here). But
it cannot pass its input through: at σ = 0.02 its image error is 7× that of returning the noisy
input, the detail inside the folded pixel cells being what it loses. EDM's skip (``skip_std`` = σ_d)
passes the input through, and with it the noise up to mid σ, which the network learns to cancel as
slowly as the identity: its samples keep residual noise. If F's image error is D whatever the skip,
the error of ``x̂0`` is about ``(1 − c_skip)²D + c_skip²σ²``, least for the Wiener weight
``c_skip ≈ D/(D + σ²)``: a skip sized for ``skip_std ≈ √D``, passing the input where σ ≪ √D and
little noise elsewhere. With D ≈ 0.003–0.005 here, ``skip_std`` = 0.06 beat both 0.12 and 0.04 on
the image error from σ = 0.02 to 0.2 in equal short runs.

Resolution shift: in pixel space a 256² image keeps its layout visible under far more noise than a
64² one (an object covers 16× more pixels, so its signal-to-noise ratio summed over the object is 4×
higher). Training σ is therefore shifted per size, ``σ' = sσ / (1 + (s − 1)σ)``, with the same
shift ``s = exp(μ(tokens))`` the scheduler applies when sampling at that size; otherwise little
training lands at σ > 0.9, where a 256² layout is decided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel

from mrflow.flow.schedules import static_shift
from mrflow.tiny.models import SIGMA_DATA, check_prediction, check_skip_std
from mrflow.tiny.text import TextEmbeddings

TIMESTEP_SCALE = 1000.0  # the UNet sees t = σ·1000, as diffusers' flow-matching pipelines feed it
SIGMA_FLOOR = 0.2  # training only: caps the 1/σ² weight of the image loss at 25
LR_SCHEDULES = ("constant", "cosine")  # after warmup (:func:`learning_rate`)


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


def sample_sigmas(count: int, sampling: SigmaSampling, generator: torch.Generator, shift: float = 1.0) -> torch.Tensor:
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


def input_scale(sigmas: torch.Tensor) -> torch.Tensor:
    """``c_in = 1/√((1 − σ)²σ_d² + σ²)``: scales ``x_σ`` to unit variance for data of std σ_d."""
    return (((1 - sigmas) * SIGMA_DATA) ** 2 + sigmas**2).rsqrt()


def skip_scales(sigmas: torch.Tensor, skip_std: float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM's ``(c_skip, c_out)`` for the rectified-flow path ``x_σ = (1 − σ)x0 + σε``.

    ``x̂0 = c_skip·x_σ + c_out·F`` with ``c_skip = (1 − σ)s²/((1 − σ)²s² + σ²)`` for a skip sized
    for data of std ``s = skip_std``, and ``c_out`` the std of what the skip leaves,
    ``c_out² = (1 − c_skip(1 − σ))²σ_d² + c_skip²σ²`` for the data's own std σ_d, so the network's
    target ``(x0 − c_skip·x_σ)/c_out`` has unit variance at every σ. With ``s = σ_d`` (EDM) the skip
    is the best linear estimate of x0 and ``c_out = σσ_d/√((1 − σ)²σ_d² + σ²)``.

    A narrower ``s`` shrinks the skip faster as σ grows: it still passes the input through where
    σ ≪ s (at σ = 0.02, c_skip ≈ 0.99 for s = 0.12) but lets far less noise through at mid σ
    (0.23 instead of 0.9 at σ = 0.2), which the network would otherwise have to learn to cancel.
    Near σ = 1 the skip vanishes and F predicts the image.
    """
    s2 = check_skip_std(skip_std) ** 2
    c_skip = (1 - sigmas) * s2 / ((1 - sigmas) ** 2 * s2 + sigmas**2)
    c_out = ((1 - c_skip * (1 - sigmas)) ** 2 * SIGMA_DATA**2 + c_skip**2 * sigmas**2).sqrt()
    return c_skip, c_out


def predict_sample(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    text: TextEmbeddings,
    prediction: str = "sample",
    skip_std: float = SIGMA_DATA,
) -> torch.Tensor:
    """The denoised latents x̂0 for noisy folded latents ``(B, 48, h, w)`` at per-sample σ ``(B,)``.

    ``prediction="sample"``: ``x̂0 = σ_d·F``; ``"edm"``: ``x̂0 = c_skip·x_σ + c_out·F``
    (:func:`skip_scales` for ``skip_std``).
    """
    check_prediction(prediction)
    c_in = input_scale(sigmas.float()).to(latents.dtype)[:, None, None, None]
    raw = unet(
        latents * c_in,
        sigmas * TIMESTEP_SCALE,
        encoder_hidden_states=text.tokens,
        class_labels=text.pooled,
        return_dict=False,
    )[0]
    if prediction == "sample":
        return SIGMA_DATA * raw
    c_skip, c_out = (c.to(latents.dtype)[:, None, None, None] for c in skip_scales(sigmas.float(), skip_std))
    return c_skip * latents + c_out * raw


def flow_loss(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    text: TextEmbeddings,
    sigmas: torch.Tensor,
    noise: torch.Tensor,
    prediction: str = "sample",
    skip_std: float = SIGMA_DATA,
) -> torch.Tensor:
    """Velocity loss ``‖x̂0 − x0‖²/max(σ, floor)²`` for clean folded latents ``(B, 48, h, w)``.

    Equals ``‖v̂ − (ε − x0)‖²`` wherever σ ≥ the floor: :data:`SIGMA_FLOOR` for ``"sample"``, none
    for ``"edm"``, whose error ``c_out·(F − target)`` already shrinks with σ (the weight on F's unit
    variance target, ``c_out²/σ²``, stays between σ_d² = 0.36 and 1.4 for ``skip_std`` = σ_d, 8.2 for
    0.12; a much narrower skip weights low σ heavily: 28 at σ = 0.05 against 0.44 at 0.9 for 0.06).

    That imbalance was measured against EDM's weighting (F's error weighted equally at every σ,
    ``‖x̂0 − x0‖²/c_out²``) in equal 1100-step 64² runs with the 0.06 skip: the equal weighting
    denoised better only at σ ≥ 0.7 (0.0214 vs 0.0224 at 0.7) and worse below (0.0064 vs 0.0040 at
    σ = 0.1), and sampled worse on 48 held-out prompts (attribute mean 34.0 vs 40.2, colour 67 vs 75,
    shape 8 vs 13), so the velocity loss stays.
    """
    floor = SIGMA_FLOOR if check_prediction(prediction) == "sample" else 1e-4
    s = sigmas.to(latents.device, latents.dtype)[:, None, None, None]
    noisy = (1 - s) * latents + s * noise
    sample = predict_sample(unet, noisy, s.flatten(), text, prediction, skip_std).float()
    return ((sample - latents.float()) / s.float().clamp(min=floor)).pow(2).mean()


def learning_rate(
    step: int, base: float, warmup: int, total: int, schedule: str = "constant", final: float = 0.1
) -> float:
    """The learning rate at ``step`` (0-based): linear warmup over ``warmup`` steps to ``base``, then
    ``base`` (``schedule="constant"``) or a cosine decay reaching ``final · base`` at ``total``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant":
        return base
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))


@torch.no_grad()
def denoising_error(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    text: TextEmbeddings,
    sigmas: Sequence[float],
    generator: torch.Generator,
    prediction: str = "sample",
    skip_std: float = SIGMA_DATA,
) -> list[tuple[float, float]]:
    """Per σ, the clean-image error ``mean ‖x̂0 − x0‖²`` and that of returning the input unchanged.

    Guidance off, the same noise for every σ (drawn once from ``generator``). How a model's
    denoising holds up from the refine range (σ ≲ 0.3) to layout noise, independent of sampling:
    where its error exceeds the input's, it loses detail it was given.

    Returns:
        ``[(model error, input error), ...]`` in the order of ``sigmas``, per latent element.
    """
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    errors = []
    for sigma in sigmas:
        if not 0 < sigma < 1:
            raise ValueError(f"sigmas must be in (0, 1), got {sigma!r}")
        noisy = (1 - sigma) * latents + sigma * noise
        s = torch.full((latents.shape[0],), float(sigma), device=latents.device)
        sample = predict_sample(unet, noisy, s, text, prediction, skip_std)
        errors.append(((sample - latents).pow(2).mean().item(), (noisy - latents).pow(2).mean().item()))
    return errors
