"""The staged-sampling pipeline: prompt → low-res flow → decode → upscale → encode → noise → refine → decode."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mrflow.backbone import Backbone
from mrflow.config import NativeConfig, SamplingConfig, StagedConfig, default_preset, get_preset
from mrflow.images import OUTPUT_TYPES, OutputType, convert_output
from mrflow.output import STAGES, MrFlowOutput
from mrflow.seeding import derive_seed, generators, image_seeds
from mrflow.stages import StageRunner, StepCallback
from mrflow.timing import StageTimer
from mrflow.upscalers import Upscaler, load_upscaler

logger = logging.getLogger(__name__)

Generators = torch.Generator | list[torch.Generator]


@dataclass(frozen=True)
class Request:
    """A validated call: everything the stages need, nothing left to check."""

    prompts: list[str]
    negative_prompts: list[str] | None
    num_images_per_prompt: int
    size: tuple[int, int]
    low_res_size: tuple[int, int] | None
    config: SamplingConfig
    guidance: float
    seeds: list[int]
    output_type: OutputType

    @property
    def batch_size(self) -> int:
        return len(self.prompts) * self.num_images_per_prompt


def _as_prompt_list(value: str | list[str], name: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"{name} must be a string or a non-empty list of strings, got {value!r}")
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name} entries must be strings, got {item!r}")
    return items


def round_to_multiple(value: float, multiple: int) -> int:
    """Nearest multiple of ``multiple`` (halves round up), at least ``multiple``."""
    return max(multiple, int(value / multiple + 0.5) * multiple)


class MrFlowPipeline:
    """Staged text-to-image sampling over any :class:`~mrflow.backbone.Backbone`.

    Args:
        backbone: the flow-matching model (see ``mrflow.pipelines`` for the adapters).
        upscaler: stage-2 super-resolution, as an object, a built-in name or a weights file;
            ``None`` means bicubic interpolation.
    """

    def __init__(self, backbone: Backbone, upscaler: Upscaler | str | Path | None = None) -> None:
        self.backbone = backbone
        self.upscaler = load_upscaler(upscaler, backbone.device)
        self._progress: dict[str, Any] = {}

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | Path | None = None,
        upscaler: Upscaler | str | Path | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **backbone_kwargs: Any,
    ) -> MrFlowPipeline:
        """Load a backbone from a hub id or a diffusers folder (family detected from ``model_index.json``).

        ``None`` or ``"tiny"`` loads the embedded model shipped with mrflow, offline; its upscaler
        defaults to the built-in Real-ESRGAN network :data:`mrflow.tiny.DEFAULT_UPSCALER`.
        """
        from mrflow.pipelines import load_backbone

        if pretrained is None or pretrained == "tiny":
            from mrflow.tiny import default_upscaler, weights_dir

            pretrained = weights_dir()
            upscaler = default_upscaler() if upscaler is None else upscaler
        backbone = load_backbone(pretrained, device=device, dtype=dtype, **backbone_kwargs)
        return cls(backbone, upscaler)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def to(self, device: torch.device | str) -> MrFlowPipeline:
        self.backbone.to(device)
        self.upscaler.to(device)
        return self

    def enable_model_cpu_offload(self, device: torch.device | str = "cuda") -> None:
        """Keep each backbone model on the CPU until it runs (needs an accelerator; slower, far less memory)."""
        self._backbone_feature("enable_model_cpu_offload")(device)
        self.upscaler.to(self.device)

    def enable_vae_tiling(self) -> None:
        """Decode and encode in tiles, for large targets (small seam-free differences from untiled)."""
        self._backbone_feature("enable_vae_tiling")()

    def _backbone_feature(self, name: str) -> Callable[..., None]:
        feature = getattr(self.backbone, name, None)
        if feature is None:
            raise NotImplementedError(f"the {self.backbone.family} backbone does not support {name}")
        return feature

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Options for the per-stage tqdm bars, e.g. ``disable=True``."""
        self._progress = dict(kwargs)

    # ------------------------------------------------------------------ validation
    def resolve_config(
        self,
        preset: str | SamplingConfig | None,
        overrides: dict[str, Any],
    ) -> SamplingConfig:
        """The preset with explicit values applied; overriding a field the mode lacks is an error.

        A preset name is looked up among the backbone variant's presets (``configs/<variant>.toml``)
        first, then the generic ones, so ``"12plus1"`` may differ per backbone and distilled
        backbones add their own (``"4plus1"``).
        """
        variant = getattr(self.backbone, "variant", self.backbone.family)
        if preset is None:
            preset = default_preset(variant)
        config = get_preset(preset, variant) if isinstance(preset, str) else preset
        if not isinstance(config, StagedConfig | NativeConfig):
            raise ValueError(f"preset must be a preset name or a sampling config, got {preset!r}")
        given = {k: v for k, v in overrides.items() if v is not None}
        fields = {f.name for f in dataclasses.fields(config)}
        wrong = sorted(set(given) - fields)
        if wrong:
            mode = "native" if isinstance(config, NativeConfig) else "staged"
            raise ValueError(f"{wrong} do not apply to {mode} sampling (preset {preset!r})")
        return dataclasses.replace(config, **given)

    def _check_size(self, name: str, value: int) -> None:
        multiple, minimum = self.backbone.size_multiple, self.backbone.min_size
        if isinstance(value, bool) or not isinstance(value, int) or value % multiple or value < minimum:
            raise ValueError(f"{name} must be an integer multiple of {multiple} and >= {minimum}, got {value!r}")

    def check_inputs(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None,
        height: int | None,
        width: int | None,
        config: SamplingConfig,
        guidance_scale: float | None,
        num_images_per_prompt: int,
        seed: int | list[int] | None,
        output_type: str,
    ) -> Request:
        """Validate everything before any model runs; raise ``ValueError`` naming the bad value."""
        prompts = _as_prompt_list(prompt, "prompt")
        if any(not p.strip() for p in prompts):
            raise ValueError(f"prompts must not be empty, got {prompts!r}")
        negatives = None
        if negative_prompt is not None:
            negatives = _as_prompt_list(negative_prompt, "negative_prompt")
            if len(negatives) == 1 and len(prompts) > 1:
                negatives = negatives * len(prompts)
            if len(negatives) != len(prompts):
                raise ValueError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts")
            if not self.backbone.uses_negative_prompt:
                raise ValueError(f"{self.backbone.family} does not use a negative prompt with this guidance setup")
        if isinstance(num_images_per_prompt, bool) or not isinstance(num_images_per_prompt, int):
            raise ValueError(f"num_images_per_prompt must be an integer >= 1, got {num_images_per_prompt!r}")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be an integer >= 1, got {num_images_per_prompt!r}")
        size = (height or self.backbone.default_size, width or self.backbone.default_size)
        self._check_size("height", size[0])
        self._check_size("width", size[1])
        low_res_size = None
        if isinstance(config, StagedConfig):
            multiple = self.backbone.size_multiple
            low_res_size = (
                round_to_multiple(size[0] * config.low_res_scale, multiple),
                round_to_multiple(size[1] * config.low_res_scale, multiple),
            )
            if min(low_res_size) < self.backbone.min_size:
                raise ValueError(
                    f"low-res size {low_res_size[0]}x{low_res_size[1]} (target {size[0]}x{size[1]} × "
                    f"low_res_scale {config.low_res_scale}) is below the model's minimum {self.backbone.min_size}"
                )
        guidance = self.backbone.default_guidance if guidance_scale is None else guidance_scale
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not guidance >= 0:
            raise ValueError(f"guidance_scale must be a number >= 0, got {guidance_scale!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        batch = len(prompts) * num_images_per_prompt
        return Request(
            prompts=prompts,
            negative_prompts=negatives,
            num_images_per_prompt=num_images_per_prompt,
            size=size,
            low_res_size=low_res_size,
            config=config,
            guidance=float(guidance),
            seeds=image_seeds(seed, batch),
            output_type=output_type,  # type: ignore[arg-type]
        )

    # ------------------------------------------------------------------ the call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        preset: str | SamplingConfig | None = None,
        *,
        low_res_scale: float | None = None,
        low_res_steps: int | None = None,
        refine_steps: int | None = None,
        refine_sigma: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        seed: int | list[int] | None = None,
        generator: Generators | None = None,
        output_type: str = "pil",
        callback: StepCallback | None = None,
    ) -> MrFlowOutput:
        """Generate images.

        Args:
            prompt: one prompt or a list; each yields ``num_images_per_prompt`` images in a row.
            negative_prompt: for backbones with true CFG; one string or one per prompt.
            height, width: target size in pixels (multiples of ``backbone.size_multiple``).
            preset: ``"12plus1"``, ``"20plus1"``, ``"12plus1-text"``, ``"native"``, a backbone's own
                (``"4plus1"`` for distilled models) or a config object; ``None`` takes the
                backbone's default preset (``12plus1`` unless its config file names another).
            low_res_scale, low_res_steps, refine_steps, refine_sigma: override the staged preset;
                ``refine_sigma`` is the true noise level in (0, 1).
            num_inference_steps: override the step count of native sampling.
            guidance_scale: the backbone's guidance (distilled for FLUX.1, CFG for SD3); same value
                in both sampling stages.
            seed: image ``i`` uses ``seed + i`` (or give one seed per image); refine noise uses a
                seed derived from it. ``None`` draws fresh seeds, recorded in the output.
            generator: diffusers-style alternative to ``seed``: one generator, or one per image,
                used for the stage-1 and then the refine noise.
            output_type: ``"pil"``, ``"pt"`` (``(B, 3, H, W)`` in [0, 1]) or ``"np"`` (``(B, H, W, 3)``).
            callback: ``callback(stage, step, sigma, latents)`` after every Euler step.
        """
        overrides = {
            "low_res_scale": low_res_scale,
            "low_res_steps": low_res_steps,
            "refine_steps": refine_steps,
            "refine_sigma": refine_sigma,
            "steps": num_inference_steps,
        }
        config = self.resolve_config(preset, overrides)
        request = self.check_inputs(
            prompt, negative_prompt, height, width, config, guidance_scale, num_images_per_prompt, seed, output_type
        )
        noise_gens, refine_gens, seeds, refine_seeds = self._generators(request, seed, generator)
        timer = StageTimer(self.device)
        start = timer.now()
        with timer.stage("text_encoding"):
            embeddings = self.backbone.encode_prompt(
                request.prompts, request.negative_prompts, request.num_images_per_prompt, request.guidance
            )
        run = StageRunner(self.backbone, embeddings, request.guidance, timer, callback, self._progress)
        if isinstance(config, StagedConfig):
            assert request.low_res_size is not None
            low_res_latents = run.sample("low_res_sampling", request.low_res_size, config.low_res_steps, noise_gens)
            low_res_image = run.decode("low_res_decode", low_res_latents)
            with timer.stage("upscale"):
                upscaled_image = self.upscaler.upscale(low_res_image, request.size)
            upscaled_latents = run.encode(upscaled_image)
            refined_latents = run.refine(upscaled_latents, config, refine_gens)
            image = run.decode("decode", refined_latents)
        else:
            steps = config.steps or self.backbone.default_steps
            image = run.decode("decode", run.sample("native_sampling", request.size, steps, noise_gens))
            low_res_image = upscaled_image = None
        with timer.stage("postprocess"):
            outputs = [
                None if x is None else convert_output(x, request.output_type)
                for x in (image, low_res_image, upscaled_image)
            ]
        total = timer.now() - start
        return self._output(request, outputs, timer, total, run, seeds, refine_seeds)

    def _generators(
        self, request: Request, seed: int | list[int] | None, generator: Generators | None
    ) -> tuple[list[torch.Generator], list[torch.Generator], list[int], list[int] | None]:
        """Stage-1 and refine generators, one per image, and the seeds to record."""
        batch = request.batch_size
        if generator is None:
            refine_seeds = [derive_seed(s, "refine") for s in request.seeds]
            return generators(request.seeds), generators(refine_seeds), request.seeds, refine_seeds
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
        gens = [generator] * batch if isinstance(generator, torch.Generator) else list(generator)
        if len(gens) != batch or not all(isinstance(g, torch.Generator) for g in gens):
            raise ValueError(f"generator must be a torch.Generator or a list of {batch}, got {generator!r}")
        return gens, gens, [g.initial_seed() for g in gens], None

    def _output(
        self,
        request: Request,
        outputs: list[Any],
        timer: StageTimer,
        total: float,
        run: StageRunner,
        seeds: list[int],
        refine_seeds: list[int] | None,
    ) -> MrFlowOutput:
        config = request.config
        staged = isinstance(config, StagedConfig)
        stage_seconds = {name: timer.seconds.get(name, 0.0) for name in STAGES}
        return MrFlowOutput(
            images=outputs[0],
            low_res_images=outputs[1],
            upscaled_images=outputs[2],
            stage_seconds=stage_seconds,
            total_seconds=total,
            model_evals=dict(run.evals),
            seeds=seeds,
            refine_seeds=refine_seeds,
            sigmas=run.sigmas,
            refine_sigma=run.sigmas["refine"][0] if staged else None,
            size=request.size,
            low_res_size=request.low_res_size,
            # the resolved guidance too, so an image's record does not depend on a default that may change
            config={
                "mode": "staged" if staged else "native",
                **dataclasses.asdict(config),
                "guidance_scale": request.guidance,
            },
        )
