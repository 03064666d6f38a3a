"""Z-Image / Z-Image-Turbo adapter against diffusers' ZImagePipeline on tiny random components."""

from __future__ import annotations

import pytest
import torch
from diffusers import ZImagePipeline

from mrflow import MrFlowPipeline
from mrflow.pipelines.zimage import ZImageBackbone, zimage_cfg

PROMPTS = ["a red cat", "a big blue dog on the left"]


@pytest.fixture(scope="module")
def zimage_pipe() -> ZImagePipeline:
    import tiny_families

    pipe = tiny_families.zimage_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _mrflow(pipe: ZImagePipeline, **kwargs: object) -> MrFlowPipeline:
    mrflow_pipe = MrFlowPipeline(ZImageBackbone(pipe, **kwargs))
    mrflow_pipe.set_progress_bar_config(disable=True)
    return mrflow_pipe


@pytest.mark.parametrize(("turbo", "guidance"), [(True, 0.0), (False, 5.0)])
def test_native_matches_diffusers(zimage_pipe: ZImagePipeline, turbo: bool, guidance: float) -> None:
    # The stock pipeline rewrites the prompt list it is given in place: pass a copy.
    reference = zimage_pipe(
        list(PROMPTS),
        guidance_scale=guidance,
        height=32,
        width=48,
        num_inference_steps=3,
        num_images_per_prompt=2,
        generator=[torch.Generator().manual_seed(s) for s in (21, 22, 23, 24)],
        output_type="pt",
    ).images
    out = _mrflow(zimage_pipe, turbo=turbo)(
        PROMPTS,
        height=32,
        width=48,
        preset="native",
        num_inference_steps=3,
        num_images_per_prompt=2,
        seed=21,
        output_type="pt",
    )
    assert (out.images - reference).abs().max() < 1e-4


def test_velocity_undoes_the_flipped_time_and_sign(zimage_pipe: ZImagePipeline) -> None:
    backbone = ZImageBackbone(zimage_pipe, turbo=True)
    embeddings = backbone.encode_prompt(["a cat"], None, 1, 0.0)
    latents = torch.randn(1, 4, 8, 8)
    raw = zimage_pipe.transformer([latents[0].unsqueeze(1)], torch.tensor([1 - 0.3]), embeddings.prompt_embeds)[0]
    torch.testing.assert_close(backbone.velocity(latents, 0.3, embeddings, 0.0), -raw[0].squeeze(1).unsqueeze(0))


def test_turbo_is_chosen_by_name_or_flag(zimage_pipe: ZImagePipeline) -> None:
    assert ZImageBackbone(zimage_pipe, source="Tongyi-MAI/Z-Image-Turbo").variant == "zimage-turbo"
    base = ZImageBackbone(zimage_pipe, source="some/z-image")
    assert (base.variant, base.default_steps, base.default_guidance) == ("zimage", 50, 5.0)
    turbo = ZImageBackbone(zimage_pipe, turbo=True)
    assert (turbo.default_steps, turbo.default_guidance, turbo.uses_negative_prompt) == (8, 0.0, False)


def test_cfg_normalization_caps_the_norm() -> None:
    pos, neg = torch.randn(4, 1, 6, 6), torch.randn(4, 1, 6, 6)
    capped = zimage_cfg(pos, neg, 5.0, 1.0)
    assert torch.linalg.vector_norm(capped) == pytest.approx(float(torch.linalg.vector_norm(pos)), rel=1e-5)
    torch.testing.assert_close(zimage_cfg(pos, neg, 5.0, 0.0), pos + 5.0 * (pos - neg))


def test_turbo_8plus1_starts_refine_at_a_schedule_node(zimage_pipe: ZImagePipeline) -> None:
    pipe = _mrflow(zimage_pipe, turbo=True)
    out = pipe("a red cat", height=48, width=80, preset="8plus1", seed=4, output_type="pt")
    native = pipe.backbone.native_sigmas(8, 48, 80)
    assert out.images.shape == (1, 3, 48, 80)
    # Static shift 3 on linspace(1, 1/8, 8): the last node is 0.3 at every size.
    assert out.refine_sigma == pytest.approx(0.3, abs=1e-6)
    assert out.sigmas["refine"] == pytest.approx([float(native[-2]), 0.0])
    assert out.model_evals == {"low_res_sampling": 8, "refine": 1}


def test_base_12plus1_non_square_reports_true_sigma(zimage_pipe: ZImagePipeline) -> None:
    out = _mrflow(zimage_pipe, turbo=False)("a red cat", height=40, width=72, seed=2, output_type="pt")
    assert out.images.shape == (1, 3, 40, 72)
    assert out.low_res_size == (20, 36)
    assert out.refine_sigma == pytest.approx(0.12, abs=1e-6)
    assert out.sigmas["refine"][0] == out.refine_sigma
