"""The embedded model: shipped weights, the adapter against a hand-written sampler, training steps."""

from __future__ import annotations

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from mrflow import MrFlowPipeline
from mrflow.pipelines.tiny import TinyBackbone
from mrflow.tiny import DEFAULT_UPSCALER, weights_dir
from mrflow.tiny.models import (
    SchedulerConfig,
    TextConfig,
    TransformerConfig,
    build_scheduler,
    build_transformer,
    read_text_config,
    save_model_folder,
)
from mrflow.tiny.text import MiniLMEncoder, TextEmbeddings
from mrflow.tiny.training import (
    SigmaSampling,
    drop_captions,
    flow_loss,
    sample_sigmas,
)

PROMPTS = ["a red circle to the left of a blue square", "two green stars"]
SMALL_TRANSFORMER = TransformerConfig(num_layers=1, attention_head_dim=8, num_attention_heads=2)


@pytest.fixture(scope="module")
def text_encoder() -> MiniLMEncoder:
    return MiniLMEncoder(TextConfig())


@pytest.fixture(scope="module")
def small_backbone(text_encoder: MiniLMEncoder) -> TinyBackbone:
    torch.manual_seed(0)
    transformer = build_transformer(SMALL_TRANSFORMER)
    return TinyBackbone(transformer, build_scheduler(SchedulerConfig()), text_encoder, source="test")


def _pipe(backbone: TinyBackbone) -> MrFlowPipeline:
    pipe = MrFlowPipeline(backbone, "bicubic")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference_native(backbone: TinyBackbone, steps: int, guidance: float, seed: int, size: int) -> torch.Tensor:
    """diffusers' scheduler driving the raw transformer: x̂0 → v = (x − x̂0)/σ, CFG against "", t = σ·1000."""
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(backbone.scheduler.config)
    scheduler.set_timesteps(steps)
    cond = backbone.text_encoder(PROMPTS)
    uncond = backbone.text_encoder([""] * len(PROMPTS))
    shape = (3, size, size)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(2)])
    for t in scheduler.timesteps:
        sigma = float(t) / 1000
        sample = backbone.transformer(
            hidden_states=torch.cat([x, x]),
            timestep=t.expand(4),
            encoder_hidden_states=torch.cat([uncond.tokens, cond.tokens]),
            pooled_projections=torch.cat([uncond.pooled, cond.pooled]),
            return_dict=False,
        )[0]
        v_uncond, v_cond = ((torch.cat([x, x]) - sample) / sigma).chunk(2)
        x = scheduler.step(v_uncond + guidance * (v_cond - v_uncond), t, x).prev_sample
    return (x / 2 + 0.5).clamp(0, 1)


@torch.no_grad()
def test_native_matches_hand_written_sampler(small_backbone: TinyBackbone) -> None:
    out = _pipe(small_backbone)(
        PROMPTS,
        preset="native",
        num_inference_steps=4,
        guidance_scale=3.0,
        seed=11,
        height=64,
        width=64,
        output_type="pt",
    )
    reference = _reference_native(small_backbone, steps=4, guidance=3.0, seed=11, size=64)
    assert out.images.shape == reference.shape == (2, 3, 64, 64)
    assert (out.images - reference).abs().max().item() <= 1e-4


@torch.no_grad()
def test_staged_runs_at_each_training_size(small_backbone: TinyBackbone) -> None:
    pipe = _pipe(small_backbone)
    for scale in (0.25, 0.5):
        out = pipe(PROMPTS[0], low_res_scale=scale, low_res_steps=2, seed=0, height=256, width=256, output_type="pt")
        assert out.images.shape == (1, 3, 256, 256)
        assert out.low_res_size == (int(256 * scale),) * 2
    assert torch.isfinite(out.images).all()


def test_unguided_call_skips_the_unconditional_branch(small_backbone: TinyBackbone) -> None:
    embeddings = small_backbone.encode_prompt(PROMPTS, None, 2, guidance=1.0)
    assert embeddings.uncond is None
    assert embeddings.cond.tokens.shape == (4, TextConfig().max_tokens, 384)


def test_model_folder_round_trip(tmp_path, small_backbone: TinyBackbone) -> None:
    b = small_backbone
    save_model_folder(tmp_path, b.transformer, b.scheduler, TextConfig())
    assert read_text_config(tmp_path) == TextConfig()
    loaded = TinyBackbone.from_pretrained(tmp_path, device="cpu")
    latents = torch.randn(1, 3, 64, 64)
    text = TinyBackbone.encode_prompt(loaded, ["a red disc"], None, 1, 1.0)
    assert torch.equal(loaded.velocity(latents, 0.5, text, 1.0), b.velocity(latents, 0.5, text, 1.0))


def test_flow_training_step_decreases_loss() -> None:
    torch.manual_seed(0)
    model = build_transformer(SMALL_TRANSFORMER)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    latents = torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1
    text = TextEmbeddings(torch.randn(8, 6, 384, generator=gen), torch.randn(8, 384, generator=gen))
    null = TextEmbeddings(torch.zeros(1, 6, 384), torch.zeros(1, 384))
    noise = torch.randn(latents.shape, generator=gen)
    sigmas = sample_sigmas(8, SigmaSampling(), gen)
    conditioning = drop_captions(text, null, 0.1, gen)
    losses = []
    for _ in range(6):
        loss = flow_loss(model, latents, conditioning, sigmas, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_sigma_mixture_covers_the_refine_range() -> None:
    sigmas = sample_sigmas(4000, SigmaSampling(), torch.Generator().manual_seed(0))
    assert 0 < sigmas.min() and sigmas.max() < 1
    in_refine = ((sigmas > 0.05) & (sigmas < 0.3)).float().mean()
    assert in_refine > 0.2
    with pytest.raises(ValueError, match="refine_low"):
        SigmaSampling(refine_low=0.5, refine_high=0.2)


# ---------------------------------------------------------------------- the shipped weights
@pytest.fixture(scope="module")
def default_pipe() -> MrFlowPipeline:
    pipe = MrFlowPipeline.from_pretrained(device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_shipped_weights_are_the_default(default_pipe: MrFlowPipeline) -> None:
    assert default_pipe.backbone.family == "tiny"
    assert default_pipe.backbone.source == str(weights_dir())
    assert default_pipe.backbone.default_size == 256
    files = sorted(p.relative_to(weights_dir()).as_posix() for p in weights_dir().rglob("*") if p.is_file())
    assert "transformer/diffusion_pytorch_model.safetensors" in files
    assert sum(p.stat().st_size for p in weights_dir().rglob("*") if p.is_file()) < 30 * 2**20
    assert getattr(default_pipe.upscaler, "name", None) == DEFAULT_UPSCALER


@torch.no_grad()
@pytest.mark.parametrize("preset", ["native", "12plus1"])
def test_shipped_weights_generate(default_pipe: MrFlowPipeline, preset: str) -> None:
    kwargs = {"num_inference_steps": 3} if preset == "native" else {"low_res_steps": 3}
    out = default_pipe(PROMPTS[0], preset=preset, seed=0, output_type="np", **kwargs)
    assert out.images.shape == (1, 256, 256, 3)
    assert out.images.std() > 0.01  # not a flat image
