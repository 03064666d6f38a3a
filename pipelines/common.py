"""Pieces shared by the adapters: device/dtype defaults, the scaled VAE, scheduler-config schedules."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mrflow.config import backbone_defaults
from mrflow.flow import (
    exponential_shift,
    linear_mu,
    static_shift,
    stretch_to_terminal,
    uniform_sigmas,
    with_terminal_zero,
)

logger = logging.getLogger(__name__)

# Scheduler options whose schedules mrflow does not reproduce; refusing beats sampling wrongly.
_UNSUPPORTED_SCHEDULER_FLAGS = (
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "invert_sigmas",
    "stochastic_sampling",
)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 for transformers and text encoders on CUDA (FLUX/T5 overflow in fp16); fp32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def vae_scale_factor(vae: Any) -> int:
    """Pixels per latent pixel of a diffusers ``AutoencoderKL``: one halving per extra block."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def decode_scaled(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Undo the family's latent normalisation ``z = (μ − shift)·scale`` and decode to [-1, 1]."""
    scale = vae.config.scaling_factor
    shift = vae.config.shift_factor or 0.0
    return vae.decode((latents / scale + shift).to(vae.dtype), return_dict=False)[0]


def encode_scaled(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """Encode [-1, 1] images to normalised latents, float32, using the posterior mean.

    The mean (not a sample) keeps the upscaled image's latent deterministic; the refine stage adds
    its own, explicit noise.
    """
    scale = vae.config.scaling_factor
    shift = vae.config.shift_factor or 0.0
    posterior = vae.encode(images.to(vae.dtype)).latent_dist
    return ((posterior.mode() - shift) * scale).to(torch.float32)


def check_scheduler_config(config: Mapping[str, Any]) -> None:
    for flag in _UNSUPPORTED_SCHEDULER_FLAGS:
        if config.get(flag):
            raise ValueError(f"scheduler option {flag}={config[flag]!r} is not supported by mrflow")
    shift_type = config.get("time_shift_type", "exponential")
    if shift_type != "exponential":
        raise ValueError(f"scheduler time_shift_type={shift_type!r} is not supported (only 'exponential')")


def scheduler_sigmas(
    config: Mapping[str, Any],
    num_steps: int,
    num_tokens: int,
    base_sigmas: torch.Tensor | None = None,
    mu: float | None = None,
) -> torch.Tensor:
    """The schedule a diffusers ``FlowMatchEulerDiscreteScheduler`` with ``config`` would produce.

    Args:
        config: the scheduler config (``shift``, ``use_dynamic_shifting``, ``base_shift``, ...).
        num_steps: Euler steps.
        num_tokens: image tokens at the sampled size, for the dynamic shift.
        base_sigmas: the unshifted grid a pipeline passes in (FLUX passes ``linspace(1, 1/N, N)``);
            ``None`` uses the scheduler's default grid from σ_max to σ_min of its training schedule.
        mu: the dynamic shift a pipeline computes its own way (FLUX.2 Klein); ``None`` takes μ
            linear in ``num_tokens`` from the config.

    Returns:
        ``num_steps + 1`` float32 σ ending in 0. The dynamic μ is capped at ``max_shift`` so sizes
        beyond the model's largest training size do not get ever-larger shifts.
    """
    check_scheduler_config(config)
    dynamic = bool(config.get("use_dynamic_shifting", False))
    shift = float(config.get("shift", 1.0))
    if base_sigmas is None:
        sigma_min = 1.0 / int(config.get("num_train_timesteps", 1000))
        if not dynamic:
            sigma_min = float(static_shift(torch.tensor(sigma_min, dtype=torch.float64), shift))
        base_sigmas = uniform_sigmas(num_steps, 1.0, sigma_min)
    if dynamic:
        if mu is None:
            mu = linear_mu(
                num_tokens,
                int(config.get("base_image_seq_len", 256)),
                int(config.get("max_image_seq_len", 4096)),
                float(config.get("base_shift", 0.5)),
                float(config.get("max_shift", 1.15)),
            )
        sigmas = exponential_shift(base_sigmas, mu)
    else:
        sigmas = static_shift(base_sigmas, shift)
    terminal = config.get("shift_terminal")
    if terminal:
        sigmas = stretch_to_terminal(sigmas, float(terminal))
    return with_terminal_zero(sigmas)


def linspace_sigmas(num_steps: int) -> torch.Tensor:
    """The unshifted grid FLUX-style pipelines pass to the scheduler: ``linspace(1, 1/N, N)`` (float64)."""
    return torch.from_numpy(np.linspace(1.0, 1.0 / num_steps, num_steps))


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``uncond + s·(cond − uncond)``."""
    return uncond + scale * (cond - uncond)


class PipelineBackbone:
    """Plumbing shared by adapters that wrap one diffusers pipeline as ``self.pipe``.

    Subclasses set ``pipeline_class`` and call :meth:`_use_defaults` with their variant name, which
    takes the default steps, guidance and negative prompt from ``configs/<variant>.toml``.
    """

    pipeline_class: ClassVar[type]
    family: ClassVar[str]
    pipe: Any
    variant: str
    default_steps: int
    default_guidance: float
    default_negative_prompt: str | None

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> Any:
        """Load the diffusers pipeline (bf16 on CUDA, fp32 on CPU unless ``dtype`` is given) and wrap it."""
        device = resolve_device(device)
        dtype = dtype or default_dtype(device)
        pipe = cls.pipeline_class.from_pretrained(str(source), dtype=dtype).to(device)
        logger.info("loaded %s from %s (%s, %s)", cls.pipeline_class.__name__, source, device, dtype)
        return cls(pipe, source=str(source), **kwargs)

    @property
    def device(self) -> torch.device:
        """Where the models compute: the transformer's device, or the offload target when offloading."""
        return self.pipe._execution_device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.transformer.dtype

    def to(self, device: torch.device | str) -> Any:
        self.pipe.to(device)
        return self

    def enable_model_cpu_offload(self, device: torch.device | str = "cuda") -> None:
        """Keep each model on the CPU until it runs (diffusers' model offload): less GPU memory, slower."""
        self.pipe.enable_model_cpu_offload(device=device)

    def enable_vae_tiling(self) -> None:
        """Decode and encode large images tile by tile (diffusers' VAE tiling)."""
        self.pipe.vae.enable_tiling()

    def _use_defaults(self, variant: str) -> None:
        defaults = backbone_defaults(variant)
        self.variant = variant
        self.default_steps = defaults.steps
        self.default_guidance = defaults.guidance
        self.default_negative_prompt = defaults.negative_prompt

    def _negatives(self, prompts: list[str], negative_prompts: list[str] | None) -> list[str]:
        """The given negative prompts, or the variant's default one per prompt."""
        if negative_prompts is not None:
            return negative_prompts
        return [self.default_negative_prompt or ""] * len(prompts)
