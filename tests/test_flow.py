"""Flow math against closed forms: Gaussian data has an exact velocity field and exact ODE paths."""

from __future__ import annotations

import math

import pytest
import torch

from mrflow.flow import (
    add_noise,
    euler_sample,
    exponential_shift,
    linear_mu,
    refine_sigmas,
    static_shift,
    stretch_to_terminal,
    uniform_sigmas,
    with_terminal_zero,
)

MEAN, STD = 1.5, 0.4


def gaussian_velocity(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """E[ε − x0 | x_σ = x] for x0 ~ N(MEAN, STD²), ε ~ N(0, 1), x_σ = (1 − σ)x0 + σε (jointly Gaussian)."""
    var = (1 - sigma) ** 2 * STD**2 + sigma**2
    cov = sigma - (1 - sigma) * STD**2
    return -MEAN + cov / var * (x - (1 - sigma) * MEAN)


def exact_endpoint(z: torch.Tensor) -> torch.Tensor:
    """The ODE carries noise z at σ = 1 to MEAN + STD·z at σ = 0 (the path is affine in z)."""
    return MEAN + STD * z


def test_euler_converges_to_exact_ode_solution_at_first_order() -> None:
    z = torch.randn(20_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    errors = []
    for steps in (4, 16, 64):
        sigmas = with_terminal_zero(uniform_sigmas(steps, 1.0, 1.0 / steps))
        x = euler_sample(gaussian_velocity, z, sigmas)
        errors.append((x - exact_endpoint(z)).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.06
    # First order: 4x the steps cuts the error by roughly 4x.
    assert 2.5 < errors[1] / errors[2] < 6


def test_euler_reproduces_data_mean_and_std() -> None:
    z = torch.randn(50_000, generator=torch.Generator().manual_seed(1))
    x = euler_sample(gaussian_velocity, z, with_terminal_zero(uniform_sigmas(200)))
    assert x.mean().item() == pytest.approx(MEAN, abs=0.01)
    assert x.std().item() == pytest.approx(STD, abs=0.01)


def test_refine_from_exact_marginal_recovers_data_distribution() -> None:
    x0 = MEAN + STD * torch.randn(50_000, generator=torch.Generator().manual_seed(2))
    eps = torch.randn(50_000, generator=torch.Generator().manual_seed(3))
    sigma = 0.12
    noisy = add_noise(x0, eps, sigma)
    # The noised marginal is exactly the one the velocity field expects at σ.
    assert noisy.std().item() == pytest.approx(math.sqrt((1 - sigma) ** 2 * STD**2 + sigma**2), abs=0.01)
    out = euler_sample(gaussian_velocity, noisy, refine_sigmas(sigma, 8))
    assert out.mean().item() == pytest.approx(MEAN, abs=0.01)
    assert out.std().item() == pytest.approx(STD, abs=0.01)


def test_add_noise_endpoints_and_errors() -> None:
    x0, eps = torch.full((3,), 2.0), torch.full((3,), -1.0)
    assert torch.equal(add_noise(x0, eps, 0.0), x0)
    assert torch.equal(add_noise(x0, eps, 1.0), eps)
    assert torch.allclose(add_noise(x0, eps, 0.25), 0.75 * x0 + 0.25 * eps)
    with pytest.raises(ValueError, match="1.5"):
        add_noise(x0, eps, 1.5)
    with pytest.raises(ValueError, match="shape"):
        add_noise(x0, eps[:2], 0.5)


def test_uniform_sigmas_match_flux_convention() -> None:
    sigmas = uniform_sigmas(4)
    assert torch.allclose(sigmas, torch.tensor([1.0, 0.75, 0.5, 0.25], dtype=torch.float64))
    full = with_terminal_zero(sigmas)
    assert full.dtype == torch.float32 and full[-1] == 0 and len(full) == 5


@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_static_shift_is_monotone_with_fixed_endpoints(shift: float) -> None:
    s = torch.linspace(0, 1, 101, dtype=torch.float64)
    shifted = static_shift(s, shift)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert torch.all(shifted[1:] > shifted[:-1])
    mid = static_shift(torch.tensor(0.5, dtype=torch.float64), shift)
    assert mid.item() == pytest.approx(shift / (1 + shift))


def test_exponential_shift_equals_static_shift_of_e_mu() -> None:
    s = torch.linspace(0.01, 1, 50, dtype=torch.float64)
    assert torch.allclose(exponential_shift(s, 1.1), static_shift(s, math.exp(1.1)))
    assert exponential_shift(torch.tensor([0.0], dtype=torch.float64), 1.0).item() == 0


def test_linear_mu_interpolates_and_caps() -> None:
    assert linear_mu(256) == pytest.approx(0.5)
    assert linear_mu(4096) == pytest.approx(1.15)
    assert linear_mu(2176) == pytest.approx(0.825)
    assert linear_mu(16384) == pytest.approx(1.15)  # capped, not extrapolated to ~3.6
    assert linear_mu(16384, cap=False) > 3
    assert linear_mu(64) < 0.5  # the line is followed below the base size, as the families do
    with pytest.raises(ValueError, match="0"):
        linear_mu(0)


def test_stretch_to_terminal_ends_at_terminal() -> None:
    s = static_shift(torch.linspace(1, 0.05, 10, dtype=torch.float64), 3.0)
    out = stretch_to_terminal(s, 0.02)
    assert out[-1].item() == pytest.approx(0.02)
    assert torch.all(out[1:] < out[:-1])


def test_refine_sigmas_start_at_the_true_noise_level_without_shift() -> None:
    assert refine_sigmas(0.12, 1).tolist() == pytest.approx([0.12, 0.0])
    assert refine_sigmas(0.3, 3).tolist() == pytest.approx([0.3, 0.2, 0.1, 0.0])
    for bad in (0.0, 1.0, -0.1, 1.2):
        with pytest.raises(ValueError, match="refine sigma"):
            refine_sigmas(bad, 1)
    with pytest.raises(ValueError, match="num_steps"):
        refine_sigmas(0.1, 0)
