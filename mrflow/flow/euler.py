"""Euler integration of the flow ODE and the forward noising path."""

from __future__ import annotations

from collections.abc import Callable

import torch

VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]
StepCallback = Callable[[int, float, torch.Tensor], None]


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Rectified-flow path ``x_σ = (1 − σ)·x0 + σ·ε``; σ = 0 gives data, σ = 1 pure noise."""
    if not 0 <= sigma <= 1:
        raise ValueError(f"sigma must be in [0, 1], got {sigma!r}")
    if noise.shape != x0.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} differs from x0 shape {tuple(x0.shape)}")
    return (1 - sigma) * x0 + sigma * noise


def euler_sample(
    velocity: VelocityFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Integrate ``dx/dσ = v(x, σ)`` with explicit Euler over the given σ list (Euler 1768).

    Args:
        velocity: ``v(x, σ)``, the model's prediction of ``ε − x0`` at noise level σ.
        x: the state at ``sigmas[0]``; integrated in float32 whatever the model's dtype.
        sigmas: decreasing σ values, ``len(sigmas) − 1`` steps, usually ending in 0.
        callback: called after each step with ``(step_index, next_sigma, x)``.

    Returns:
        The state at ``sigmas[-1]``, float32.
    """
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"sigmas must be a 1-D tensor of at least 2 values, got shape {tuple(sigmas.shape)}")
    x = x.to(torch.float32)
    values = [float(s) for s in sigmas]
    for i, (sigma, sigma_next) in enumerate(zip(values[:-1], values[1:], strict=True)):
        v = velocity(x, sigma)
        x = x + (sigma_next - sigma) * v.to(torch.float32)
        if callback is not None:
            callback(i, sigma_next, x)
    return x
