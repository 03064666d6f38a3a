"""SpandrelUpscaler: exact sizes, padding, batches, dtypes, half-precision fallback, config checks."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from sr_helpers import descriptor, tiny_compact, tiny_rrdb

from mrflow.upscalers import SpandrelUpscaler, Upscaler, UpscalerConfig


def _upscaler(state: dict[str, torch.Tensor], **config: object) -> SpandrelUpscaler:
    return SpandrelUpscaler(descriptor(state), "tiny", "cpu", UpscalerConfig(**config))


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_satisfies_the_upscaler_protocol() -> None:
    upscaler = _upscaler(tiny_compact())
    assert isinstance(upscaler, Upscaler) and upscaler.scale == 4 and upscaler.to("cpu") is upscaler


def test_size_not_divisible_by_the_model_requirement_is_padded_and_cropped() -> None:
    model = descriptor(tiny_rrdb(2))  # x2plus layout: inputs must be multiples of 4
    assert model.size_requirements.multiple_of == 4
    upscaler = SpandrelUpscaler(model, "x2", "cpu", UpscalerConfig(tile_size=0))
    image = _image(1, 3, 13, 18)
    result = upscaler.upscale(image, (26, 36))
    # spandrel's own call implements the same contract (pad, run, clamp, crop) independently
    reference = descriptor(tiny_rrdb(2))(image)
    assert result.shape == (1, 3, 26, 36)
    assert (result - reference).abs().max() < 1e-6


def test_batch_equals_single() -> None:
    upscaler = _upscaler(tiny_rrdb(4), tile_size=0)
    batch = _image(3, 3, 17, 22)
    together = upscaler.upscale(batch, (68, 88))
    apart = torch.cat([upscaler.upscale(image[None], (68, 88)) for image in batch])
    assert (together - apart).abs().max() < 1e-5


@pytest.mark.parametrize("size", [(34, 44), (40, 50), (68, 88), (100, 120), (7, 9)])
def test_any_target_size_is_reached_exactly_in_range(size: tuple[int, int]) -> None:
    image = _image(2, 3, 17, 22)
    result = _upscaler(tiny_compact()).upscale(image, size)
    assert result.shape == (2, 3, *size) and result.dtype == image.dtype
    assert result.min() >= 0 and result.max() <= 1


def test_x2_from_a_x4_model_is_a_full_pass_then_antialiased_downsampling() -> None:
    state = tiny_compact()
    image = _image(1, 3, 16, 20)
    with torch.inference_mode():
        native = descriptor(state).model(image)
    expected = F.interpolate(native, size=(32, 40), mode="bicubic", antialias=True).clamp(0, 1)
    assert (_upscaler(state).upscale(image, (32, 40)) - expected).abs().max() < 1e-6


def test_downscaling_target_skips_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    upscaler = _upscaler(tiny_compact())
    monkeypatch.setattr(upscaler, "_forward", lambda *args: pytest.fail("model ran"))
    assert upscaler.upscale(_image(1, 3, 16, 16), (8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_output_keeps_the_input_dtype(dtype: torch.dtype) -> None:
    image = _image(1, 3, 9, 11).to(dtype)
    assert _upscaler(tiny_compact()).upscale(image, (36, 44)).dtype == dtype


def _overflowing_compact() -> dict[str, torch.Tensor]:
    """First-layer outputs ~1e6: beyond fp16's 65504, harmless in fp32 (the output is clamped)."""
    state = tiny_compact(num_conv=1, seed=5)
    state["body.0.weight"] = state["body.0.weight"] * 1e6
    return state


def test_half_precision_overflow_is_redone_in_fp32(caplog: pytest.LogCaptureFixture) -> None:
    state = _overflowing_compact()
    image = _image(1, 3, 12, 12)
    half = _upscaler(state, precision="fp16", tile_size=0)
    with torch.inference_mode():  # the premise: fp16 really overflows here
        assert not torch.isfinite(half._forward(image, torch.float16)).all()
    with caplog.at_level(logging.WARNING, logger="mrflow.upscalers.spandrel_upscaler"):
        result = half.upscale(image, (48, 48))
    assert any("NaN/Inf" in record.message for record in caplog.records)
    full = _upscaler(state, precision="fp32", tile_size=0).upscale(image, (48, 48))
    assert torch.isfinite(result).all() and torch.equal(result, full)


def test_auto_precision_is_fp32_on_cpu() -> None:
    assert _upscaler(tiny_compact()).compute_dtype == torch.float32
    assert _upscaler(tiny_compact(), precision="bf16").compute_dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"precision": "fp8"}, "fp8"),
        ({"tile_size": 40, "tile_overlap": 32}, "40"),
        ({"tile_overlap": -1}, "-1"),
        ({"memory_budget_mb": 0}, "memory_budget_mb"),
    ],
)
def test_bad_config_names_the_value(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UpscalerConfig(**config)


@pytest.mark.parametrize(
    ("image", "size", "message"),
    [
        (torch.rand(3, 8, 8), (32, 32), "shape"),
        (torch.rand(1, 4, 8, 8), (32, 32), "shape"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), (32, 32), "float"),
        (torch.rand(1, 3, 8, 8), (0, 32), "size"),
    ],
)
def test_bad_inputs_are_rejected(image: torch.Tensor, size: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _upscaler(tiny_compact()).upscale(image, size)
