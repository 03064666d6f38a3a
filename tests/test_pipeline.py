"""MrFlowPipeline on tiny FLUX and SD3 backbones: diffusers is the reference for native mode."""

from __future__ import annotations

import pytest
import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline

from mrflow import MrFlowPipeline
from mrflow.images import vae_to_unit
from mrflow.output import STAGES
from mrflow.pipelines.flux import FluxBackbone
from mrflow.pipelines.sd3 import SD3Backbone
from mrflow.seeding import derive_seed

PROMPTS = ["a red cat", "a blue dog on the left"]


@pytest.fixture(scope="module")
def flux(tiny_flux_pipe: FluxPipeline) -> MrFlowPipeline:
    pipe = MrFlowPipeline(FluxBackbone(tiny_flux_pipe, max_sequence_length=16))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd3(tiny_sd3_pipe: StableDiffusion3Pipeline) -> MrFlowPipeline:
    pipe = MrFlowPipeline(SD3Backbone(tiny_sd3_pipe, max_sequence_length=16))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference(diffusers_pipe, seed: int, **kwargs) -> torch.Tensor:
    count = len(PROMPTS)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(count)]
    return diffusers_pipe(PROMPTS, generator=gens, output_type="pt", max_sequence_length=16, **kwargs).images


@pytest.mark.parametrize("guidance", [3.5, 1.0])
def test_flux_native_matches_diffusers(flux: MrFlowPipeline, tiny_flux_pipe: FluxPipeline, guidance: float) -> None:
    size = dict(height=48, width=64)
    ref = _reference(tiny_flux_pipe, 7, num_inference_steps=5, guidance_scale=guidance, **size)
    out = flux(
        PROMPTS,
        preset="native",
        num_inference_steps=5,
        guidance_scale=guidance,
        seed=7,
        output_type="pt",
        **size,
    )
    assert out.images.shape == ref.shape == (2, 3, 48, 64)
    assert (out.images - ref).abs().max().item() <= 1e-4
    assert out.config["guidance_scale"] == guidance  # the output records the guidance it used


def test_output_records_the_default_guidance(flux: MrFlowPipeline) -> None:
    out = flux(PROMPTS[:1], preset="native", num_inference_steps=1, seed=0, output_type="pt", height=32, width=32)
    assert out.config["guidance_scale"] == flux.backbone.default_guidance == 3.5


def test_flux_native_matches_diffusers_true_cfg(tiny_flux_pipe: FluxPipeline) -> None:
    pipe = MrFlowPipeline(FluxBackbone(tiny_flux_pipe, true_cfg_scale=2.5, max_sequence_length=16))
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(height=32, width=32, guidance_scale=3.5)
    ref = _reference(
        tiny_flux_pipe, 3, num_inference_steps=3, negative_prompt=["a dog"] * 2, true_cfg_scale=2.5, **kwargs
    )
    out = pipe(PROMPTS, "a dog", preset="native", num_inference_steps=3, seed=3, output_type="pt", **kwargs)
    assert (out.images - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("guidance", [5.0, 1.0])
def test_sd3_native_matches_diffusers(
    sd3: MrFlowPipeline, tiny_sd3_pipe: StableDiffusion3Pipeline, guidance: float
) -> None:
    size = dict(height=64, width=40)
    negative = ["a green photo", ""]
    ref = _reference(
        tiny_sd3_pipe, 11, num_inference_steps=4, guidance_scale=guidance, negative_prompt=negative, **size
    )
    out = sd3(
        PROMPTS,
        negative,
        preset="native",
        num_inference_steps=4,
        guidance_scale=guidance,
        seed=11,
        output_type="pt",
        **size,
    )
    assert (out.images - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_staged_runs_end_to_end_with_stage_times(name: str, request: pytest.FixtureRequest) -> None:
    pipe: MrFlowPipeline = request.getfixturevalue(name)
    shapes: dict[str, tuple[int, ...]] = {}
    out = pipe(
        PROMPTS,
        height=64,
        width=48,
        preset="12plus1",
        seed=1,
        output_type="pt",
        callback=lambda stage, step, sigma, x: shapes.setdefault(stage, tuple(x.shape)),
    )
    factor = pipe.backbone.vae_scale_factor
    channels = pipe.backbone.latent_channels
    assert out.low_res_size == (32, 24) and out.size == (64, 48)
    assert shapes == {
        "low_res_sampling": (2, channels, 32 // factor, 24 // factor),
        "refine": (2, channels, 64 // factor, 48 // factor),
    }
    assert out.low_res_images.shape == (2, 3, 32, 24)
    assert out.upscaled_images.shape == out.images.shape == (2, 3, 64, 48)
    assert out.model_evals == {"low_res_sampling": 12, "refine": 1}
    assert out.refine_sigma == pytest.approx(0.12)
    assert out.sigmas["refine"] == pytest.approx([0.12, 0.0])
    assert len(out.sigmas["low_res_sampling"]) == 13 and out.sigmas["low_res_sampling"][0] == pytest.approx(1.0)
    assert set(out.stage_seconds) == set(STAGES)
    staged = ["text_encoding", "low_res_sampling", "low_res_decode", "upscale", "encode", "refine", "decode"]
    assert all(out.stage_seconds[s] > 0 for s in staged)
    assert out.stage_seconds["native_sampling"] == 0
    assert 0 <= out.overhead_seconds < out.total_seconds
    assert out.seeds == [1, 2] and out.refine_seeds == [derive_seed(1, "refine"), derive_seed(2, "refine")]
    for images in (out.images, out.low_res_images, out.upscaled_images):
        assert images.min() >= 0 and images.max() <= 1


def test_refine_matches_hand_computation(sd3: MrFlowPipeline, tiny_sd3_pipe: StableDiffusion3Pipeline) -> None:
    """One refine step by hand from diffusers parts: encode (posterior mean, scaled), noise, one Euler step, decode."""
    sigma, seed = 0.3, 4
    out = sd3("a red cat", height=32, width=32, refine_sigma=sigma, guidance_scale=1.0, seed=seed, output_type="pt")
    vae, transformer = tiny_sd3_pipe.vae, tiny_sd3_pipe.transformer
    with torch.no_grad():
        moments = vae.encode(out.upscaled_images * 2 - 1).latent_dist.mean
        z0 = (moments - vae.config.shift_factor) * vae.config.scaling_factor
        eps = torch.randn(z0.shape[1:], generator=torch.Generator().manual_seed(derive_seed(seed, "refine")))
        noisy = (1 - sigma) * z0 + sigma * eps[None]
        embeds, _, pooled, _ = tiny_sd3_pipe.encode_prompt(
            "a red cat", None, None, do_classifier_free_guidance=False, max_sequence_length=16
        )
        v = transformer(
            hidden_states=noisy,
            timestep=torch.tensor([sigma * 1000]),
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        refined = noisy - sigma * v
        image = vae.decode(refined / vae.config.scaling_factor + vae.config.shift_factor).sample
    assert (out.images - vae_to_unit(image)).abs().max().item() <= 1e-4


def test_same_seed_same_image_and_new_seed_new_image(flux: MrFlowPipeline) -> None:
    a = flux("a red cat", height=32, width=32, seed=123, output_type="pt").images
    b = flux("a red cat", height=32, width=32, seed=123, output_type="pt").images
    c = flux("a red cat", height=32, width=32, seed=124, output_type="pt").images
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["flux", "sd3"])
def test_batch_equals_one_prompt_at_a_time(name: str, request: pytest.FixtureRequest) -> None:
    pipe: MrFlowPipeline = request.getfixturevalue(name)
    kwargs = dict(height=32, width=32, output_type="pt", low_res_steps=3)
    batch = pipe(PROMPTS, seed=50, num_images_per_prompt=2, **kwargs)
    assert batch.seeds == [50, 51, 52, 53]
    singles = [pipe(PROMPTS[i // 2], seed=50 + i, **kwargs).images[0] for i in range(4)]
    assert (batch.images - torch.stack(singles)).abs().max().item() <= 1e-4


def test_generator_argument_like_diffusers(flux: MrFlowPipeline) -> None:
    gens = [torch.Generator().manual_seed(9), torch.Generator().manual_seed(10)]
    by_gen = flux(
        PROMPTS, height=32, width=32, preset="native", num_inference_steps=2, generator=gens, output_type="pt"
    )
    by_seed = flux(PROMPTS, height=32, width=32, preset="native", num_inference_steps=2, seed=9, output_type="pt")
    assert torch.equal(by_gen.images, by_seed.images)
    assert by_gen.seeds == [9, 10]


def test_output_types(flux: MrFlowPipeline) -> None:
    pil = flux("a cat", height=32, width=48, seed=0, low_res_steps=2, output_type="pil")
    arr = flux("a cat", height=32, width=48, seed=0, low_res_steps=2, output_type="np")
    assert pil.images[0].size == (48, 32) and pil.low_res_images[0].size == (24, 16)
    assert arr.images.shape == (1, 32, 48, 3) and arr.images.dtype.name == "float32"
    import numpy as np

    assert np.abs(np.asarray(pil.images[0], dtype=np.float32) / 255 - arr.images[0]).max() <= 0.5 / 255 + 1e-6


def test_orchestration_overhead_is_small(flux: MrFlowPipeline) -> None:
    flux("a cat", height=64, width=64, seed=0, output_type="pt")  # warm-up
    out = flux("a cat", height=64, width=64, seed=0, output_type="pt")
    assert out.overhead_seconds / out.total_seconds < 0.02


def test_vae_tiling_matches_diffusers_with_tiling(tiny_flux_pipe: FluxPipeline) -> None:
    """Tiled decoding goes through diffusers' own VAE tiling: native mode still equals FluxPipeline."""
    import copy

    reference_pipe = copy.deepcopy(tiny_flux_pipe)
    reference_pipe.vae.enable_tiling()  # the tiny VAE tiles above 32 px
    pipe = MrFlowPipeline(FluxBackbone(copy.deepcopy(tiny_flux_pipe), max_sequence_length=16))
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_vae_tiling()
    ref = _reference(reference_pipe, 2, num_inference_steps=2, height=96, width=64)
    untiled = _reference(tiny_flux_pipe, 2, num_inference_steps=2, height=96, width=64)
    out = pipe(PROMPTS, height=96, width=64, preset="native", num_inference_steps=2, seed=2, output_type="pt")
    assert (out.images - ref).abs().max().item() <= 1e-4
    assert (ref - untiled).abs().max().item() > 1e-4  # tiling really changed the decode


def test_offload_and_tiling_need_support_from_the_backbone(flux: MrFlowPipeline) -> None:
    class Bare:
        family = "bare"
        device = torch.device("cpu")

    pipe = MrFlowPipeline.__new__(MrFlowPipeline)
    pipe.backbone = Bare()  # type: ignore[assignment]
    with pytest.raises(NotImplementedError, match="bare backbone does not support enable_vae_tiling"):
        pipe.enable_vae_tiling()


def test_gan_upscaler_by_name_feeds_the_refine_stage(
    tiny_flux_pipe: FluxPipeline, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 2 with a real built-in Real-ESRGAN network: its output is what gets encoded and refined."""
    from mrflow.upscalers import load_upscaler

    monkeypatch.setenv("MRFLOW_CACHE_DIR", str(tmp_path))
    pipe = MrFlowPipeline(FluxBackbone(tiny_flux_pipe, max_sequence_length=16), upscaler="realesr-animevideov3")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.upscaler.name == "realesr-animevideov3" and pipe.upscaler.scale == 4
    out = pipe("a red cat", height=64, width=48, seed=3, low_res_steps=2, output_type="pt")
    direct = load_upscaler("realesr-animevideov3").upscale(out.low_res_images, (64, 48))
    assert out.upscaled_images.shape == (1, 3, 64, 48)
    assert (out.upscaled_images - direct).abs().max().item() <= 1e-5
    bicubic = torch.nn.functional.interpolate(out.low_res_images, size=(64, 48), mode="bicubic", antialias=True)
    assert (out.upscaled_images - bicubic.clamp(0, 1)).abs().max().item() > 1e-2  # a GAN, not interpolation
