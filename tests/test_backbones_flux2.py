"""FLUX.2 Klein adapter against diffusers' Flux2KleinPipeline on tiny random components."""

from __future__ import annotations

import pytest
import torch
from diffusers import Flux2KleinPipeline

from mrflow import MrFlowPipeline
from mrflow.pipelines.flux2 import Flux2KleinBackbone, empirical_mu

PROMPTS = ["a red cat", "a big blue dog on the left"]


@pytest.fixture(scope="module", params=[False, True], ids=["base", "distilled"])
def klein_pipe(request: pytest.FixtureRequest) -> Flux2KleinPipeline:
    import tiny_families

    pipe = tiny_families.flux2_klein_pipeline(distilled=request.param)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def mrflow_pipe(klein_pipe: Flux2KleinPipeline) -> MrFlowPipeline:
    import tiny_families

    backbone = Flux2KleinBackbone(klein_pipe, text_encoder_out_layers=tiny_families.TINY_KLEIN_LAYERS)
    pipe = MrFlowPipeline(backbone)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_native_matches_diffusers(klein_pipe: Flux2KleinPipeline, mrflow_pipe: MrFlowPipeline) -> None:
    import tiny_families

    guidance = mrflow_pipe.backbone.default_guidance
    reference = klein_pipe(
        prompt=list(PROMPTS),
        guidance_scale=guidance,
        height=32,
        width=48,
        num_inference_steps=3,
        num_images_per_prompt=2,
        generator=[torch.Generator().manual_seed(s) for s in (31, 32, 33, 34)],
        output_type="pt",
        text_encoder_out_layers=tiny_families.TINY_KLEIN_LAYERS,
    ).images
    out = mrflow_pipe(
        PROMPTS,
        height=32,
        width=48,
        preset="native",
        num_inference_steps=3,
        num_images_per_prompt=2,
        seed=31,
        output_type="pt",
    )
    assert (out.images - reference).abs().max() < 1e-4


def test_variant_and_defaults(mrflow_pipe: MrFlowPipeline) -> None:
    backbone = mrflow_pipe.backbone
    if backbone.distilled:
        expected = ("flux2-klein-distilled", 4, 1.0, False)
    else:
        expected = ("flux2-klein", 50, 4.0, True)
    assert (
        backbone.variant,
        backbone.default_steps,
        backbone.default_guidance,
        backbone.uses_negative_prompt,
    ) == (expected)
    # Spatial latents are the patchified ones: 4 VAE channels × 2×2, factor 2 × 2.
    assert (backbone.latent_channels, backbone.vae_scale_factor, backbone.size_multiple) == (16, 4, 4)


def test_empirical_mu_depends_on_steps_and_tokens() -> None:
    assert empirical_mu(4096, 4) == pytest.approx(2.2911, abs=1e-3)
    assert empirical_mu(4096, 50) == pytest.approx(2.0232, abs=1e-3)
    # Past 4300 tokens only the 200-step line counts, whatever the step count.
    assert empirical_mu(8192, 4) == empirical_mu(8192, 50) == pytest.approx(0.00016927 * 8192 + 0.45666666)


def test_default_preset_non_square_reports_true_sigma(mrflow_pipe: MrFlowPipeline) -> None:
    backbone = mrflow_pipe.backbone
    preset = "4plus1" if backbone.distilled else "12plus1"
    out = mrflow_pipe("a red cat", height=48, width=72, preset=preset, seed=6, output_type="pt")
    assert out.images.shape == (1, 3, 48, 72)
    assert out.low_res_size == (24, 36)
    assert out.refine_sigma == pytest.approx(0.12, abs=1e-6)
    assert out.sigmas["refine"] == pytest.approx([0.12, 0.0], abs=1e-6)


def test_vae_round_trip_shapes(mrflow_pipe: MrFlowPipeline) -> None:
    backbone = mrflow_pipe.backbone
    latents = backbone.encode(torch.rand(2, 3, 16, 24) * 2 - 1)
    assert latents.shape == (2, 16, 4, 6)
    assert backbone.decode(latents).shape == (2, 3, 16, 24)
