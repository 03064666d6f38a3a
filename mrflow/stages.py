"""The stages of one pipeline call, each a method from inputs to outputs, sharing what the call fixed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from mrflow.backbone import Backbone
from mrflow.config import StagedConfig
from mrflow.flow import add_noise, euler_sample, refine_sigmas
from mrflow.images import unit_to_vae, vae_to_unit
from mrflow.seeding import draw_noise
from mrflow.timing import StageTimer

logger = logging.getLogger(__name__)

StepCallback = Callable[[str, int, float, torch.Tensor], None]


class StageRunner:
    """The stages of one call, sharing the backbone, the prompt embeddings and the timer."""

    def __init__(
        self,
        backbone: Backbone,
        embeddings: Any,
        guidance: float,
        timer: StageTimer,
        callback: StepCallback | None,
        progress: dict[str, Any],
    ) -> None:
        self.backbone, self.embeddings, self.guidance = backbone, embeddings, guidance
        self.timer, self.callback, self.progress = timer, callback, progress
        self.evals: dict[str, int] = {}
        self.sigmas: dict[str, list[float]] = {}
        self.batch = 0

    def _integrate(self, stage: str, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        self.sigmas[stage] = [float(s) for s in sigmas]
        self.evals[stage] = len(sigmas) - 1
        bar = tqdm(total=len(sigmas) - 1, desc=stage, leave=False, **self.progress)

        def velocity(latents: torch.Tensor, sigma: float) -> torch.Tensor:
            return self.backbone.velocity(latents, sigma, self.embeddings, self.guidance)

        def on_step(step: int, sigma: float, latents: torch.Tensor) -> None:
            bar.update(1)
            if self.callback is not None:
                self.callback(stage, step, sigma, latents)

        try:
            return euler_sample(velocity, x, sigmas, on_step)
        finally:
            bar.close()

    def _latent_shape(self, size: tuple[int, int]) -> tuple[int, int, int]:
        factor = self.backbone.vae_scale_factor
        return (self.backbone.latent_channels, size[0] // factor, size[1] // factor)

    def sample(self, stage: str, size: tuple[int, int], steps: int, gens: list[torch.Generator]) -> torch.Tensor:
        """Flow sampling from pure noise on the backbone's own schedule for ``size``."""
        with self.timer.stage(stage):
            noise = draw_noise(self._latent_shape(size), gens, self.backbone.device)
            sigmas = self.backbone.native_sigmas(steps, *size)
            logger.debug("%s: %dx%d, sigmas %s", stage, size[0], size[1], [round(float(s), 4) for s in sigmas])
            return self._integrate(stage, noise, sigmas)

    def decode(self, stage: str, latents: torch.Tensor) -> torch.Tensor:
        """Latents → ``(B, 3, H, W)`` in [0, 1]."""
        with self.timer.stage(stage):
            return vae_to_unit(self.backbone.decode(latents))

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] → latents."""
        with self.timer.stage("encode"):
            return self.backbone.encode(unit_to_vae(image))

    def refine(self, latents: torch.Tensor, config: StagedConfig, gens: list[torch.Generator]) -> torch.Tensor:
        """Inject noise at the true level σ of the refine schedule's first node, then Euler to 0.

        With ``refine_start="sigma"`` the schedule is uniform and unshifted from ``refine_sigma``;
        with ``"schedule_node"`` it is the tail of the backbone's native ``low_res_steps``-step
        schedule for the target size from the node nearest ``refine_sigma``. Either way
        ``sigmas["refine"][0]`` is the noise level actually injected.
        """
        with self.timer.stage("refine"):
            if config.refine_start == "schedule_node":
                factor = self.backbone.vae_scale_factor
                size = (latents.shape[-2] * factor, latents.shape[-1] * factor)
                native = self.backbone.native_sigmas(config.low_res_steps, *size)
                # Interior nodes only (not σ = 1 or the final 0); ties go to the lower σ.
                distance = [abs(float(s) - config.refine_sigma) for s in native]
                start = min(range(1, len(native) - 1), key=lambda i: (distance[i], -i))
                sigmas = native[start:].to(torch.float32)
                logger.info("refine starts at native node %d: sigma %.4f", start, float(sigmas[0]))
            else:
                sigmas = refine_sigmas(config.refine_sigma, config.refine_steps)
            first_sigma = float(sigmas[0])
            noise = draw_noise(tuple(latents.shape[1:]), gens, latents.device)
            noisy = add_noise(latents, noise, first_sigma)
            logger.debug("refine: true sigma %.4f, %d steps", first_sigma, len(sigmas) - 1)
            return self._integrate("refine", noisy, sigmas)
