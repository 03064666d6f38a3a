"""Qwen-Image adapter against diffusers' QwenImagePipeline on tiny random components."""

from __future__ import annotations

import pytest
import torch
from diffusers import QwenImagePipeline

from mrflow import MrFlowPipeline
from mrflow.pipeline import round_to_multiple
from mrflow.pipelines.qwenimage import QwenImageBackbone, renormalized_cfg

PROMPTS = ["a red cat", "a big blue dog on the left"]


@pytest.fixture(scope="module")
def qwen_pipe() -> QwenImagePipeline:
    import tiny_families

    pipe = tiny_families.qwenimage_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def mrflow_pipe(qwen_pipe: QwenImagePipeline) -> MrFlowPipeline:
    pipe = MrFlowPipeline(QwenImageBackbone(qwen_pipe, source="tiny"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_native_matches_diffusers_with_true_cfg(qwen_pipe: QwenImagePipeline, mrflow_pipe: MrFlowPipeline) -> None:
    seeds = [11, 12, 13, 14]
    reference = qwen_pipe(
        list(PROMPTS),
        negative_prompt=[" ", " "],
        true_cfg_scale=4.0,
        height=32,
        width=48,
        num_inference_steps=4,
        num_images_per_prompt=2,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="pt",
    ).images
    out = mrflow_pipe(
        PROMPTS,
        height=32,
        width=48,
        preset="native",
        num_inference_steps=4,
        num_images_per_prompt=2,
        seed=11,
        output_type="pt",
    )
    assert out.images.shape == (4, 3, 32, 48)
    assert (out.images - reference).abs().max() < 1e-4
    # The schedule ends at Qwen-Image's terminal sigma 0.02 before the final 0.
    assert out.sigmas["native_sampling"][-2] == pytest.approx(0.02, abs=1e-6)


def test_defaults_come_from_the_data_file(mrflow_pipe: MrFlowPipeline) -> None:
    backbone = mrflow_pipe.backbone
    assert (backbone.variant, backbone.default_steps, backbone.default_guidance) == ("qwenimage", 50, 4.0)
    assert backbone.default_negative_prompt == " "
    assert backbone.size_multiple == 4  # tiny VAE factor 2, packed 2×2 (16 for the released model)


def test_guidance_changes_the_image(mrflow_pipe: MrFlowPipeline) -> None:
    kwargs = {
        "height": 32,
        "width": 32,
        "preset": "native",
        "num_inference_steps": 2,
        "seed": 3,
        "output_type": "pt",
    }
    plain = mrflow_pipe("a red cat", guidance_scale=1.0, **kwargs).images
    guided = mrflow_pipe("a red cat", guidance_scale=4.0, **kwargs).images
    assert (plain - guided).abs().max() > 1e-4


def test_renormalized_cfg_keeps_the_conditional_norm() -> None:
    cond, uncond = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    guided = renormalized_cfg(cond, uncond, 4.0)
    torch.testing.assert_close(guided.norm(dim=-1), cond.norm(dim=-1))
    direction = uncond + 4.0 * (cond - uncond)
    torch.testing.assert_close(
        guided / guided.norm(dim=-1, keepdim=True), direction / direction.norm(dim=-1, keepdim=True)
    )


@pytest.mark.parametrize("size", [(48, 80), (44, 76)])
def test_staged_non_square_reports_true_sigma(mrflow_pipe: MrFlowPipeline, size: tuple[int, int]) -> None:
    out = mrflow_pipe("a red cat", height=size[0], width=size[1], preset="12plus1", seed=5, output_type="pt")
    assert out.images.shape == (1, 3, *size)
    assert out.upscaled_images.shape == (1, 3, *size)
    assert out.low_res_size == tuple(round_to_multiple(s * 0.5, 4) for s in size)
    assert out.refine_sigma == pytest.approx(0.12, abs=1e-6)
    assert out.sigmas["refine"] == pytest.approx([0.12, 0.0], abs=1e-6)
    assert out.model_evals == {"low_res_sampling": 12, "refine": 1}
    assert torch.isfinite(out.images).all()


def test_vae_round_trip_shapes(mrflow_pipe: MrFlowPipeline) -> None:
    backbone = mrflow_pipe.backbone
    images = torch.rand(2, 3, 16, 24) * 2 - 1
    latents = backbone.encode(images)
    assert latents.shape == (2, 4, 8, 12) and latents.dtype == torch.float32
    assert backbone.decode(latents).shape == (2, 3, 16, 24)
