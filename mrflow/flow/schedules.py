"""Noise schedules for rectified-flow sampling.

Convention (same as diffusers): σ = 1 is pure noise, σ = 0 is data, and a schedule is a
decreasing 1-D float32 tensor of ``num_steps + 1`` values ending in 0.
"""

from __future__ import annotations

import math

import torch


def _check_steps(num_steps: int) -> None:
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")


def uniform_sigmas(num_steps: int, sigma_max: float = 1.0, sigma_min: float | None = None) -> torch.Tensor:
    """``num_steps`` evenly spaced σ from ``sigma_max`` to ``sigma_min`` (default ``sigma_max/num_steps``).

    The terminal 0 is not included; :func:`with_terminal_zero` appends it. The default matches
    the FLUX convention ``linspace(1, 1/N, N)``.
    """
    _check_steps(num_steps)
    if sigma_min is None:
        sigma_min = sigma_max / num_steps
    return torch.linspace(sigma_max, sigma_min, num_steps, dtype=torch.float64)


def static_shift(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3 time shift: ``σ' = s·σ / (1 + (s − 1)·σ)``; ``s > 1`` spends more steps at high noise."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift!r}")
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def exponential_shift(sigmas: torch.Tensor, mu: float, exponent: float = 1.0) -> torch.Tensor:
    """Resolution-dependent shift of FLUX/Qwen: ``σ' = e^μ / (e^μ + (1/σ − 1)^exponent)``.

    Equals :func:`static_shift` with ``shift = e^μ`` when ``exponent == 1``.
    """
    out = torch.zeros_like(sigmas)
    positive = sigmas > 0
    s = sigmas[positive]
    out[positive] = math.exp(mu) / (math.exp(mu) + (1 / s - 1) ** exponent)
    return out


def linear_mu(
    num_tokens: int,
    base_tokens: int = 256,
    max_tokens: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
    cap: bool = True,
) -> float:
    """μ interpolated linearly in the image token count, as FLUX and Qwen-Image set it.

    Beyond ``max_tokens`` the line extrapolates; with ``cap`` the result stops at ``max_shift``
    so sizes past the model's largest training size do not get ever-larger shifts. Below
    ``base_tokens`` the line is followed as the model families do.
    """
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens!r}")
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    mu = base_shift + slope * (num_tokens - base_tokens)
    if cap and num_tokens > max_tokens:
        mu = max_shift
    return mu


def stretch_to_terminal(sigmas: torch.Tensor, terminal: float) -> torch.Tensor:
    """Rescale ``1 − σ`` so the last (non-zero) σ equals ``terminal`` (Qwen-Image's ``shift_terminal``)."""
    if not 0 < terminal < 1:
        raise ValueError(f"terminal must be in (0, 1), got {terminal!r}")
    one_minus = 1 - sigmas
    factor = one_minus[-1] / (1 - terminal)
    return 1 - one_minus / factor


def with_terminal_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """Append σ = 0 and return float32, the form the Euler integrator takes."""
    return torch.cat([sigmas.to(torch.float32), torch.zeros(1, dtype=torch.float32)])


def refine_sigmas(first_sigma: float, num_steps: int) -> torch.Tensor:
    """Explicit refine schedule: ``num_steps`` uniform steps from the *true* noise level to 0.

    No shift is applied: ``first_sigma`` is the noise level of the injected latent and the
    level at which the model is first queried.
    """
    _check_steps(num_steps)
    if not 0 < first_sigma < 1:
        raise ValueError(f"refine sigma must be in (0, 1), got {first_sigma!r}")
    return torch.linspace(first_sigma, 0.0, num_steps + 1, dtype=torch.float64).to(torch.float32)
