"""Pure flow-matching math: schedules, the noising path and Euler integration. No diffusers here."""

from mrflow.flow.euler import add_noise, euler_sample
from mrflow.flow.schedules import (
    exponential_shift,
    linear_mu,
    refine_sigmas,
    static_shift,
    stretch_to_terminal,
    uniform_sigmas,
    with_terminal_zero,
)

__all__ = [
    "add_noise",
    "euler_sample",
    "exponential_shift",
    "linear_mu",
    "refine_sigmas",
    "static_shift",
    "stretch_to_terminal",
    "uniform_sigmas",
    "with_terminal_zero",
]
