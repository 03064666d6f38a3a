"""The embedded model: shipped weights, the adapter against a hand-written sampler, training steps."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from mrflow import MrFlowPipeline
from mrflow.config import backbone_defaults
from mrflow.pipelines.tiny import TinyBackbone
from mrflow.tiny import DEFAULT_UPSCALER, weights_dir
from mrflow.tiny.models import (
    SchedulerConfig,
    TextConfig,
    UNetConfig,
    build_scheduler,
    build_unet,
    fold,
    fold_of_channels,
    latent_channels,
    read_model_index,
    save_model_folder,
    unfold,
)
from mrflow.tiny.text import MiniLMEncoder, TextEmbeddings
from mrflow.tiny.training import (
    SIGMA_DATA,
    SigmaSampling,
    denoising_error,
    drop_captions,
    flow_loss,
    input_scale,
    learning_rate,
    predict_sample,
    sample_sigmas,
    skip_scales,
)

PROMPTS = ["a red circle to the left of a blue square", "two green stars"]
SMALL_UNET = UNetConfig(block_out_channels=(32, 32), attention_heads=2)


@pytest.fixture(scope="module")
def text_encoder() -> MiniLMEncoder:
    return MiniLMEncoder(TextConfig())


@pytest.fixture(scope="module")
def small_backbone(text_encoder: MiniLMEncoder) -> TinyBackbone:
    torch.manual_seed(0)
    unet = build_unet(SMALL_UNET)
    return TinyBackbone(unet, build_scheduler(SchedulerConfig()), text_encoder, source="test")


@pytest.fixture(scope="module")
def fold2_backbone(text_encoder: MiniLMEncoder) -> TinyBackbone:
    """2×2 folding (12 channels) with one more level: the same positions per image side as fold 4 × 2."""
    torch.manual_seed(1)
    unet = build_unet(UNetConfig(block_out_channels=(32, 32, 32), attention_heads=2, fold=2))
    return TinyBackbone(unet, build_scheduler(SchedulerConfig.for_fold(2)), text_encoder, source="test")


def _pipe(backbone: TinyBackbone) -> MrFlowPipeline:
    pipe = MrFlowPipeline(backbone, "bicubic")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference_native(
    backbone: TinyBackbone, steps: int, guidance: float, seed: int, size: int, factor: int = 4
) -> torch.Tensor:
    """diffusers' scheduler driving the raw UNet on f×f-folded pixels: x̂0 = σ_d·F(x/√((1 − σ)²σ_d² + σ²))
    with σ_d = 0.6, v = (x − x̂0)/σ, CFG against "", t = σ·1000."""
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(backbone.scheduler.config)
    c = scheduler.config  # FLUX's rule: μ linear in the number of latent positions
    tokens = (size // factor) ** 2
    slope = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
    scheduler.set_timesteps(steps, mu=c.base_shift + slope * (tokens - c.base_image_seq_len))
    cond = backbone.text_encoder(PROMPTS)
    uncond = backbone.text_encoder([""] * len(PROMPTS))
    shape = (3 * factor**2, size // factor, size // factor)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(2)])
    for t in scheduler.timesteps:
        sigma = float(t) / 1000
        norm = math.sqrt(((1 - sigma) * 0.6) ** 2 + sigma**2)
        raw = backbone.unet(
            torch.cat([x, x]) / norm,
            t.expand(4),
            encoder_hidden_states=torch.cat([uncond.tokens, cond.tokens]),
            class_labels=torch.cat([uncond.pooled, cond.pooled]),
        ).sample
        v_uncond, v_cond = ((torch.cat([x, x]) - 0.6 * raw) / sigma).chunk(2)
        x = scheduler.step(v_uncond + guidance * (v_cond - v_uncond), t, x).prev_sample
    images = torch.nn.functional.pixel_shuffle(x, factor)  # 3f² channels = 3 colours × f × f pixels
    return (images / 2 + 0.5).clamp(0, 1)


def test_fold_factors_and_their_shift() -> None:
    images = torch.rand(1, 3, 8, 8)
    assert fold(images, 2).shape == (1, latent_channels(2), 4, 4) == (1, 12, 4, 4)
    assert torch.equal(unfold(fold(images, 2), 2), images)
    assert [fold_of_channels(latent_channels(f)) for f in (1, 2, 4, 8)] == [1, 2, 4, 8]
    for bad in (47, 27):  # not 3·f², or f = 3 (not a supported fold)
        with pytest.raises(ValueError, match="fold"):
            fold_of_channels(bad)
    for size in (64, 128, 256):  # the same shift per image size whatever the fold
        expected = SchedulerConfig().shift_for_tokens((size // 4) ** 2)
        assert SchedulerConfig.for_fold(2).shift_for_tokens((size // 2) ** 2) == pytest.approx(expected)
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(attention_levels=0)
    down = build_unet(UNetConfig(block_out_channels=(32, 32, 32, 32), fold=2)).config.down_block_types
    assert down == ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")


def test_fold_is_an_exact_rearrangement() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    latents = fold(images)
    assert latents.shape == (2, 48, 2, 2)
    # channel c·16 + 4·i + j of latent (y, x) holds colour c of pixel (4y + i, 4x + j)
    assert latents[1, 2 * 16 + 4 * 3 + 1, 1, 0] == images[1, 2, 4 + 3, 0 + 1]
    assert torch.equal(unfold(latents), images)


@torch.no_grad()
@pytest.mark.parametrize("factor", [4, 2], ids=["fold4", "fold2"])
def test_native_matches_hand_written_sampler(request: pytest.FixtureRequest, factor: int) -> None:
    backbone = request.getfixturevalue("small_backbone" if factor == 4 else "fold2_backbone")
    assert backbone.fold == backbone.vae_scale_factor == factor
    out = _pipe(backbone)(
        PROMPTS,
        preset="native",
        num_inference_steps=4,
        guidance_scale=3.0,
        seed=11,
        height=128,
        width=128,
        output_type="pt",
    )
    reference = _reference_native(backbone, steps=4, guidance=3.0, seed=11, size=128, factor=factor)
    assert out.images.shape == reference.shape == (2, 3, 128, 128)
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


@torch.no_grad()
def test_model_folder_round_trip(tmp_path, small_backbone: TinyBackbone) -> None:
    b = small_backbone
    latents = torch.randn(1, 48, 16, 16, generator=torch.Generator().manual_seed(0))
    text = TinyBackbone.encode_prompt(b, ["a red disc"], None, 1, 1.0)
    expected = b.velocity(latents, 0.5, text, 1.0)
    sizes = {}
    for dtype in (torch.float32, torch.float16):
        folder = tmp_path / str(dtype)
        save_model_folder(folder, b.unet, b.scheduler, TextConfig(), dtype=dtype)
        assert read_model_index(folder).text == TextConfig()
        loaded = TinyBackbone.from_pretrained(folder, device="cpu")
        assert loaded.dtype == torch.float32 and b.dtype == torch.float32  # stored fp16 still runs in fp32
        got = loaded.velocity(latents, 0.5, text, 1.0)
        if dtype == torch.float32:
            assert torch.equal(got, expected)
        else:  # fp16 weights: relative rounding ~5e-4 per weight
            assert (got - expected).abs().max() <= 2e-2 * expected.abs().max()
        sizes[dtype] = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert sizes[torch.float16] < 0.55 * sizes[torch.float32]


@torch.no_grad()
def test_fold2_model_folder_round_trip(tmp_path, fold2_backbone: TinyBackbone) -> None:
    b = fold2_backbone
    folder = save_model_folder(tmp_path / "f2", b.unet, b.scheduler, TextConfig(), torch.float32)
    assert read_model_index(folder).fold == 2
    loaded = TinyBackbone.from_pretrained(folder, device="cpu")
    assert (loaded.fold, loaded.latent_channels, loaded.size_multiple) == (2, 12, 8)
    out = _pipe(loaded)(PROMPTS[0], low_res_scale=0.5, low_res_steps=2, seed=0, height=128, width=128, output_type="pt")
    assert out.images.shape == (1, 3, 128, 128) and torch.isfinite(out.images).all()
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "fold": 4}))
    with pytest.raises(ValueError, match="fold 4"):  # the index and the UNet disagree
        TinyBackbone.from_pretrained(folder, device="cpu")


@torch.no_grad()
@pytest.mark.parametrize("skip_std", [SIGMA_DATA, 0.12])
def test_edm_prediction_round_trips_and_is_used(tmp_path, small_backbone: TinyBackbone, skip_std: float) -> None:
    b = small_backbone
    folder = save_model_folder(
        tmp_path / "edm", b.unet, b.scheduler, TextConfig(), torch.float32, prediction="edm", skip_std=skip_std
    )
    index = read_model_index(folder)
    assert (index.prediction, index.skip_std) == ("edm", skip_std)
    plain = save_model_folder(tmp_path / "s", b.unet, b.scheduler, TextConfig())
    assert read_model_index(plain).prediction == "sample"
    assert "skip_data_std" not in json.loads((plain / "model_index.json").read_text())  # nothing to size
    loaded = TinyBackbone.from_pretrained(folder, device="cpu")
    assert (loaded.prediction, loaded.skip_std) == ("edm", skip_std)
    latents = torch.randn(1, 48, 16, 16, generator=torch.Generator().manual_seed(0))
    text = b.encode_prompt(["a red disc"], None, 1, 1.0)
    sigma = 0.3
    sample = b.velocity(latents, sigma, text, 1.0) * -sigma + latents  # x̂0 of the "sample" model
    c_skip, c_out = skip_scales(torch.tensor(sigma), skip_std)
    expected = c_skip * latents + c_out * sample / SIGMA_DATA  # the same F under this skip
    got = latents - sigma * loaded.velocity(latents, sigma, text, 1.0)
    assert torch.allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError, match="prediction"):
        save_model_folder(tmp_path / "bad", b.unet, b.scheduler, TextConfig(), prediction="epsilon")
    with pytest.raises(ValueError, match="skip_std"):
        save_model_folder(tmp_path / "bad", b.unet, b.scheduler, TextConfig(), prediction="edm", skip_std=0.0)
    written = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**written, "skip_data_std": "wide"}))
    with pytest.raises(ValueError, match="skip_data_std.*'wide'"):
        TinyBackbone.from_pretrained(folder, device="cpu")


def _gaussian_path(
    count: int, sigmas: tuple[float, ...], gen: torch.Generator
) -> list[tuple[float, torch.Tensor, torch.Tensor]]:
    """``(σ, x_σ, x0)`` on the rectified-flow path for Gaussian data of std σ_d, one draw for all σ."""
    x0 = torch.randn(count, generator=gen) * SIGMA_DATA
    noise = torch.randn(count, generator=gen)
    return [(sigma, (1 - sigma) * x0 + sigma * noise, x0) for sigma in sigmas]


def test_edm_skip_is_the_linear_estimate_with_unit_variance_target() -> None:
    for sigma, noisy, x0 in _gaussian_path(400_000, (0.02, 0.3, 0.7, 0.98), torch.Generator().manual_seed(0)):
        c_skip, c_out = skip_scales(torch.tensor(sigma))
        residual = x0 - c_skip * noisy
        # the best linear estimate: its error is uncorrelated with the input (closed form vs. sample)
        assert (residual * noisy).mean().item() == pytest.approx(0.0, abs=3e-3)
        assert (residual / c_out).std().item() == pytest.approx(1.0, abs=0.01)
        # EDM's closed form of c_out: σσ_d/√((1 − σ)²σ_d² + σ²)
        edm_out = sigma * SIGMA_DATA / math.sqrt((1 - sigma) ** 2 * SIGMA_DATA**2 + sigma**2)
        assert c_out.item() == pytest.approx(edm_out, rel=1e-5)
    c_skip, c_out = skip_scales(torch.tensor([1e-4, 1 - 1e-4]))
    assert c_skip[0].item() == pytest.approx(1.0, abs=1e-3) and c_out[0].item() == pytest.approx(0.0, abs=1e-3)
    assert c_skip[1].item() == pytest.approx(0.0, abs=1e-3) and c_out[1].item() == pytest.approx(SIGMA_DATA, abs=1e-3)


def test_narrow_skip_keeps_a_unit_variance_target_and_passes_less_noise() -> None:
    draws = _gaussian_path(400_000, (0.02, 0.1, 0.3, 0.7), torch.Generator().manual_seed(1))
    for sigma, noisy, x0 in draws:
        c_skip, c_out = skip_scales(torch.tensor(sigma), 0.12)
        # c_out is the std of what the skip leaves of data with std σ_d, whatever the skip is sized for
        assert ((x0 - c_skip * noisy) / c_out).std().item() == pytest.approx(1.0, abs=0.01)
        wide, _ = skip_scales(torch.tensor(sigma), SIGMA_DATA)
        assert c_skip < wide  # less of the input, so less of its noise σ·c_skip·ε, is passed on
    # it still passes the input through where σ is small next to its width, and not where σ is large
    assert skip_scales(torch.tensor(0.02), 0.12)[0].item() > 0.95
    assert skip_scales(torch.tensor(0.4), 0.12)[0].item() < 0.1
    with pytest.raises(ValueError, match="skip_std"):
        skip_scales(torch.tensor(0.3), -0.1)


@torch.no_grad()
def test_denoising_error_matches_closed_forms_for_a_silent_network() -> None:
    torch.manual_seed(0)
    unet = build_unet(SMALL_UNET)
    unet.conv_out.weight.zero_()
    unet.conv_out.bias.zero_()  # F ≡ 0: "sample" predicts x̂0 = 0, "edm" keeps only the skip
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(4, 48, 32, 32, generator=gen) * SIGMA_DATA
    text = TextEmbeddings(torch.randn(4, 24, 384, generator=gen), torch.randn(4, 384, generator=gen))
    sigmas = (0.05, 0.5)
    plain = denoising_error(unet, latents, text, sigmas, torch.Generator().manual_seed(1))
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))  # the same draw
    for sigma, (error, given) in zip(sigmas, plain, strict=True):
        assert error == pytest.approx(latents.pow(2).mean().item(), rel=1e-5)
        assert given == pytest.approx((sigma * (noise - latents)).pow(2).mean().item(), rel=1e-5)
    for skip_std in (SIGMA_DATA, 0.12):
        edm = denoising_error(unet, latents, text, sigmas, torch.Generator().manual_seed(1), "edm", skip_std)
        for sigma, (error, _) in zip(sigmas, edm, strict=True):
            # what the skip leaves of Gaussian data of std σ_d has variance c_out²
            assert error == pytest.approx(skip_scales(torch.tensor(sigma), skip_std)[1].item() ** 2, rel=0.02)
    with pytest.raises(ValueError, match="sigmas"):
        denoising_error(unet, latents, text, (0.0,), gen)


@pytest.mark.parametrize(
    ("bf16", "prediction"),
    [(False, "sample"), (True, "sample"), (False, "edm")],
    ids=["fp32", "bf16-autocast", "edm"],
)
def test_flow_training_step_decreases_loss(bf16: bool, prediction: str) -> None:
    torch.manual_seed(0)
    model = build_unet(SMALL_UNET)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    latents = fold(torch.rand(8, 3, 32, 32, generator=gen) * 2 - 1)
    text = TextEmbeddings(torch.randn(8, 6, 384, generator=gen), torch.randn(8, 384, generator=gen))
    null = TextEmbeddings(torch.zeros(1, 6, 384), torch.zeros(1, 384))
    noise = torch.randn(latents.shape, generator=gen)
    sigmas = sample_sigmas(8, SigmaSampling(), gen)
    conditioning = drop_captions(text, null, 0.1, gen)
    losses = []
    for _ in range(6):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = flow_loss(model, latents, conditioning, sigmas, noise, prediction)
        assert loss.dtype == torch.float32  # the loss is reduced in fp32 under autocast too
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


def test_learning_rate_warmup_then_cosine() -> None:
    base, warmup, total = 4e-4, 10, 110
    assert learning_rate(0, base, warmup, total) == pytest.approx(base / warmup)
    assert learning_rate(9, base, warmup, total, "cosine") == pytest.approx(base)
    assert learning_rate(500, base, warmup, total, "constant") == base
    assert learning_rate(10, base, warmup, total, "cosine") == pytest.approx(base)  # cos(0)
    assert learning_rate(60, base, warmup, total, "cosine", 0.1) == pytest.approx(base * 0.55)  # halfway
    assert learning_rate(110, base, warmup, total, "cosine", 0.1) == pytest.approx(base * 0.1)
    assert learning_rate(200, base, warmup, total, "cosine", 0.1) == pytest.approx(base * 0.1)  # held at the end
    rates = [learning_rate(s, base, warmup, total, "cosine") for s in range(warmup, total + 1)]
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    with pytest.raises(ValueError, match="linear"):
        learning_rate(0, base, warmup, total, "linear")


@pytest.mark.parametrize("size", [64, 128, 256])
def test_training_shift_is_the_sampling_shift(small_backbone: TinyBackbone, size: int) -> None:
    """Training draws σ with the static shift equal to the scheduler's dynamic μ at that size."""
    shift = SchedulerConfig().shift_for_tokens((size // 4) ** 2)
    native = small_backbone.native_sigmas(10, size, size).double()
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(small_backbone.scheduler.config)
    scheduler.set_timesteps(10, mu=math.log(shift))
    assert torch.allclose(native, scheduler.sigmas.double(), atol=1e-6)
    base = torch.linspace(1, 1e-3, 10, dtype=torch.float64)
    assert torch.allclose(native[:-1], shift * base / (1 + (shift - 1) * base), atol=1e-6)


def test_sigma_shift_moves_the_median_and_spares_the_refine_range() -> None:
    gen = torch.Generator().manual_seed(0)
    only_logit_normal = SigmaSampling(logit_normal=1, uniform=0, refine=0)
    for shift in (1.0, 4.5):  # median of sigmoid(N(0, 1)) is 1/2; the shift maps it to s/(1 + s)
        median = sample_sigmas(20_000, only_logit_normal, gen, shift).median().item()
        assert median == pytest.approx(shift / (1 + shift), abs=0.01)
    refine = sample_sigmas(2000, SigmaSampling(logit_normal=0, uniform=0, refine=1), gen, shift=4.5)
    assert refine.min() >= 0.02 and refine.max() <= 0.35
    with pytest.raises(ValueError, match="shift"):
        sample_sigmas(4, SigmaSampling(), gen, shift=0.0)


def test_input_scale_gives_unit_variance_and_loss_is_the_velocity_error() -> None:
    gen = torch.Generator().manual_seed(0)
    for sigma, noisy, _ in _gaussian_path(200_000, (0.05, 0.3, 0.7, 0.95), gen):
        assert (input_scale(torch.tensor(sigma)) * noisy).std().item() == pytest.approx(1.0, abs=0.01)
    # the loss is ‖v̂ − (ε − x0)‖² for σ above the floor: compare with the velocity written out
    model = build_unet(SMALL_UNET)
    latents = fold(torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1)
    eps = torch.randn(latents.shape, generator=gen)
    text = TextEmbeddings(torch.randn(2, 6, 384, generator=gen), torch.randn(2, 384, generator=gen))
    sigmas = torch.tensor([0.5, 0.8])
    with torch.no_grad():
        loss = flow_loss(model, latents, text, sigmas, eps)
        s = sigmas[:, None, None, None]
        noisy = (1 - s) * latents + s * eps
        v_hat = (noisy - predict_sample(model, noisy, sigmas, text)) / s
        assert loss.item() == pytest.approx((v_hat - (eps - latents)).pow(2).mean().item(), rel=1e-4)


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
    assert default_pipe.backbone.size_multiple == backbone_defaults("tiny").size_multiple  # configs/tiny.toml
    files = sorted(p.relative_to(weights_dir()).as_posix() for p in weights_dir().rglob("*") if p.is_file())
    assert "unet/diffusion_pytorch_model.safetensors" in files
    assert sum(p.stat().st_size for p in weights_dir().rglob("*") if p.is_file()) < 30 * 2**20
    assert getattr(default_pipe.upscaler, "name", None) == DEFAULT_UPSCALER


@torch.no_grad()
@pytest.mark.parametrize("preset", ["native", "12plus1"])
def test_shipped_weights_generate(default_pipe: MrFlowPipeline, preset: str) -> None:
    kwargs = {"num_inference_steps": 3} if preset == "native" else {"low_res_steps": 3}
    out = default_pipe(PROMPTS[0], preset=preset, seed=0, output_type="np", **kwargs)
    assert out.images.shape == (1, 256, 256, 3)
    assert out.images.std() > 0.01  # not a flat image
