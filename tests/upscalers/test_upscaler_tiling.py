"""Tiled inference: coverage, tiled ≡ untiled, no seams, out-of-memory retries."""

from __future__ import annotations

import logging

import pytest
import torch
from sr_helpers import descriptor, tiny_compact, tiny_rrdb

from mrflow.upscalers import SpandrelUpscaler, UpscalerConfig, load_upscaler
from mrflow.upscalers.tiling import auto_tile_size, tile_starts, upscale_tiled, upscale_with_oom_retry


@pytest.mark.parametrize(("length", "tile", "overlap"), [(10, 16, 4), (16, 16, 4), (17, 16, 4), (100, 24, 8)])
def test_tiles_cover_with_at_least_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    ends = [min(start + tile, length) for start in starts]
    assert starts[0] == 0 and ends[-1] == length
    assert all(end - next_start >= overlap for end, next_start in zip(ends, starts[1:], strict=False))


def _upscaler(state: dict[str, torch.Tensor], **config: object) -> SpandrelUpscaler:
    return SpandrelUpscaler(descriptor(state), "tiny", "cpu", UpscalerConfig(**config))


def test_tiled_equals_untiled_when_overlap_covers_receptive_field() -> None:
    # receptive field 4 px; the zero-weight outer quarter of a 16 px overlap is 4 px
    state = tiny_compact(num_conv=2)
    image = torch.rand(2, 3, 70, 95, generator=torch.Generator().manual_seed(0))
    untiled = _upscaler(state, tile_size=0).upscale(image, (280, 380))
    tiled = _upscaler(state, tile_size=40, tile_overlap=16).upscale(image, (280, 380))
    assert (tiled - untiled).abs().max() < 1e-5


def test_tiled_rrdb_close_to_untiled_without_seams() -> None:
    # RRDBNet's receptive field exceeds any overlap; feathering keeps the difference small and smooth
    state = tiny_rrdb(4)
    image = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    untiled = _upscaler(state, tile_size=0).upscale(image, (192, 256))
    tiled = _upscaler(state, tile_size=32, tile_overlap=12).upscale(image, (192, 256))
    difference = (tiled - untiled).abs()
    assert difference.max() < 0.02 and difference.mean() < 2e-3


def test_real_model_tiles_without_seams(builtin_cache) -> None:
    upscaler = load_upscaler("realesr-animevideov3")
    # 18 stacked 3×3 convolutions see 18 px each way; the default 32 px overlap blends the rest away
    image = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    untiled = upscaler.upscale(image, (384, 384))
    upscaler.config = UpscalerConfig(tile_size=66)
    tiled = upscaler.upscale(image, (384, 384))
    difference = (tiled - untiled).abs()
    assert difference.max() < 2 / 255 and difference.mean() < 2e-4


def test_memory_budget_picks_tiles_and_stays_exact() -> None:
    state = tiny_compact(num_conv=2)
    image = torch.rand(1, 3, 90, 90, generator=torch.Generator().manual_seed(3))
    assert auto_tile_size(90, 90, 1, bytes_per_pixel=1000, budget_bytes=10**9, multiple_of=1) is None
    assert auto_tile_size(90, 90, 1, bytes_per_pixel=1000, budget_bytes=2_500_000, multiple_of=4) == 48
    untiled = _upscaler(state, tile_size=0).upscale(image, (360, 360))
    budgeted = _upscaler(state, memory_budget_mb=5, tile_overlap=16)
    assert budgeted._tile_size(image) is not None
    assert (budgeted.upscale(image, (360, 360)) - untiled).abs().max() < 1e-5


def test_out_of_memory_redoes_the_image_with_smaller_tiles(caplog: pytest.LogCaptureFixture) -> None:
    model = descriptor(tiny_compact(num_conv=2)).model.eval()
    calls = {"n": 0}

    def flaky(tile: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        # tiles above 40 px run out of memory, and so, once, does the third call of a later pass
        if max(tile.shape[-2:]) > 40 or calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        with torch.inference_mode():
            return model(tile)

    image = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(4))
    with caplog.at_level(logging.WARNING, logger="mrflow.upscalers.tiling"):
        result = upscale_with_oom_retry(image, flaky, 4, None, 16, min_tile=8)
    assert sum("out of memory" in r.message for r in caplog.records) >= 2
    # passes: whole image (80 px) fails; 40 px tiles fail at the third call; 20 px tiles (overlap
    # clamped to 9) succeed. The result must be exactly a clean 20 px pass: nothing reused from before.
    with torch.inference_mode():
        clean = upscale_tiled(image, model, 4, 20, 9)
    assert (result - clean).abs().max() < 1e-6


def test_out_of_memory_below_the_smallest_tile_propagates() -> None:
    def always_oom(tile: torch.Tensor) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.OutOfMemoryError):
        upscale_with_oom_retry(torch.rand(1, 3, 64, 64), always_oom, 4, 64, 8, min_tile=16)
