"""Bad input raises ValueError naming the value, before any model runs."""

from __future__ import annotations

from typing import Any

import pytest
from diffusers import FluxPipeline, StableDiffusion3Pipeline

from mrflow import MrFlowPipeline, StagedConfig
from mrflow.config import NativeConfig, config_from_dict, get_preset, presets
from mrflow.pipelines.flux import FluxBackbone
from mrflow.pipelines.sd3 import SD3Backbone


class _Untouchable:
    """Wraps a backbone; any model call fails the test."""

    def __init__(self, backbone: Any) -> None:
        self._backbone = backbone

    def __getattr__(self, name: str) -> Any:
        if name in {"encode_prompt", "velocity", "decode", "encode", "native_sigmas"}:
            raise AssertionError(f"{name} ran before validation finished")
        return getattr(self._backbone, name)


@pytest.fixture(scope="module")
def flux(tiny_flux_pipe: FluxPipeline) -> MrFlowPipeline:
    return MrFlowPipeline(_Untouchable(FluxBackbone(tiny_flux_pipe)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sd3(tiny_sd3_pipe: StableDiffusion3Pipeline) -> MrFlowPipeline:
    return MrFlowPipeline(_Untouchable(SD3Backbone(tiny_sd3_pipe)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(height=30), "height .* multiple of 4 .* got 30"),
        (dict(width=66), "width .* multiple of 4 .* got 66"),
        (dict(height=4), "height .* >= 8, got 4"),
        (dict(refine_sigma=0.0), "refine_sigma .* got 0.0"),
        (dict(refine_sigma=1.0), "refine_sigma .* got 1.0"),
        (dict(refine_sigma=-0.2), "refine_sigma .* got -0.2"),
        (dict(low_res_steps=0), "low_res_steps .* got 0"),
        (dict(refine_steps=0), "refine_steps .* got 0"),
        (dict(low_res_scale=1.5), "low_res_scale .* got 1.5"),
        (dict(preset="native", num_inference_steps=0), "steps .* got 0"),
        (dict(preset="native", refine_sigma=0.1), "refine_sigma.* do not apply to native"),
        (dict(preset="fast"), "unknown preset 'fast'"),
        (dict(prompt=""), "prompts must not be empty"),
        (dict(prompt=["a cat", "  "]), "prompts must not be empty"),
        (dict(prompt=[]), "prompt must be a string or a non-empty list"),
        (dict(prompt=["a", 3]), "prompt entries must be strings, got 3"),
        (dict(num_images_per_prompt=0), "num_images_per_prompt .* got 0"),
        (dict(guidance_scale=-1.0), "guidance_scale .* got -1.0"),
        (dict(output_type="jpeg"), "output_type .* got 'jpeg'"),
        (dict(seed=-5), "seed .* got -5"),
        (dict(seed=[1, 2, 3]), "got 3 seeds for 1 images"),
    ],
)
def test_bad_input_is_refused_before_models_run(flux: MrFlowPipeline, kwargs: dict, message: str) -> None:
    call = {"prompt": "a red cat", "height": 32, "width": 32, **kwargs}
    with pytest.raises(ValueError, match=message):
        flux(**call)


def test_low_res_below_minimum_names_the_size(flux: MrFlowPipeline) -> None:
    # min_size is 8 for the tiny FLUX (4-pixel multiple); 12 * 0.25 rounds to 4.
    with pytest.raises(ValueError, match=r"low-res size 4x4 .* below the model's minimum 8"):
        flux("a cat", height=12, width=12, low_res_scale=0.25)


def test_negative_prompt_list_length(sd3: MrFlowPipeline) -> None:
    with pytest.raises(ValueError, match="got 3 negative prompts for 2 prompts"):
        sd3(["a", "b"], ["x", "y", "z"], height=32, width=32)


def test_negative_prompt_refused_where_guidance_has_none(flux: MrFlowPipeline) -> None:
    with pytest.raises(ValueError, match="flux does not use a negative prompt"):
        flux("a", "blurry", height=32, width=32)


def test_seed_and_generator_are_exclusive(flux: MrFlowPipeline) -> None:
    import torch

    with pytest.raises(ValueError, match="either seed or generator"):
        flux("a", height=32, width=32, seed=1, generator=torch.Generator())


def test_presets_are_data_and_validated() -> None:
    table = presets()
    assert table["12plus1"] == StagedConfig(0.5, 12, 1, 0.12)
    assert table["20plus1"] == StagedConfig(0.5, 20, 1, 0.12)
    assert isinstance(get_preset("native"), NativeConfig)
    assert 0.16 <= table["12plus1-text"].refine_sigma <= 0.20
    with pytest.raises(ValueError, match=r"unknown keys \['sigma'\]"):
        config_from_dict("x", {"mode": "staged", "sigma": 0.1})
    with pytest.raises(ValueError, match="mode must be one of"):
        config_from_dict("x", {"mode": "turbo"})
