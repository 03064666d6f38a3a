"""Built-in models: the conversion agrees with the ncnn runtime; the cache is written once, reused,
and rebuilt when damaged; malformed ncnn files are rejected."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mrflow.upscalers import builtin, load_upscaler
from mrflow.upscalers.builtin import builtin_weights, source_files
from mrflow.upscalers.ncnn import NcnnFormatError, convert_ncnn

ncnn = pytest.importorskip("ncnn")

# fp16 weights are shared by both runtimes; what differs is accumulation order (ncnn may also use
# Winograd convolutions), so agreement is ~1e-5. A wrong kernel, bias or key mapping gives 1e-2 to 1.
TOLERANCE = 2e-4


def _ncnn_forward(name: str, image: np.ndarray) -> np.ndarray:
    """Run the original ncnn files: ``(3, h, w)`` float32 in [0, 1] → ``(3, 4h, 4w)``, unclamped."""
    param, bin_ = source_files(name)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    net.load_param(str(param))
    net.load_model(str(bin_))
    extractor = net.create_extractor()
    extractor.input("data", ncnn.Mat(np.ascontiguousarray(image, dtype=np.float32)))
    _, output = extractor.extract("output")
    return np.array(output)


def _check_agreement(name: str, sizes: list[tuple[int, int]]) -> None:
    upscaler = load_upscaler(name)
    model = upscaler._descriptor.model
    rng = np.random.default_rng(sum(map(ord, name)))
    for height, width in sizes:
        image = rng.random((3, height, width), dtype=np.float32)
        expected = _ncnn_forward(name, image)
        with torch.inference_mode():
            raw = model(torch.from_numpy(image)[None])[0].numpy()
        assert raw.shape == expected.shape == (3, 4 * height, 4 * width)
        assert np.abs(raw - expected).max() < TOLERANCE, (name, height, width)
        # and through the full upscale path (pad → run → clamp), which clamps what ncnn does not
        upscaled = upscaler.upscale(torch.from_numpy(image)[None], (4 * height, 4 * width))[0].numpy()
        assert np.abs(upscaled - np.clip(expected, 0, 1)).max() < TOLERANCE


def test_animevideov3_matches_ncnn(builtin_cache: Path) -> None:
    _check_agreement("realesr-animevideov3", [(16, 16), (23, 37), (48, 32)])


def test_x4plus_anime_matches_ncnn(builtin_cache: Path) -> None:
    _check_agreement("realesrgan-x4plus-anime", [(16, 16), (21, 30)])


@pytest.mark.slow
def test_x4plus_matches_ncnn(builtin_cache: Path) -> None:
    _check_agreement("realesrgan-x4plus", [(16, 20), (27, 16)])


def test_cache_written_once_reused_and_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(builtin.CACHE_ENV_VAR, str(tmp_path))
    conversions: list[str] = []

    def counting_convert(*args, **kwargs):
        conversions.append("convert")
        return convert_ncnn(*args, **kwargs)

    monkeypatch.setattr(builtin, "convert_ncnn", counting_convert)
    name = "realesr-animevideov3"
    first, path = builtin_weights(name)
    assert path == tmp_path / "upscalers" / f"{name}.safetensors" and len(conversions) == 1
    second, _ = builtin_weights(name)
    assert len(conversions) == 1
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind

    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit-pattern inside a tensor: still parses, digest differs
    path.write_bytes(bytes(data))
    repaired, _ = builtin_weights(name)
    assert len(conversions) == 2 and all(torch.equal(first[key], repaired[key]) for key in first)

    path.write_bytes(path.read_bytes()[:1000])  # truncated, as after a crash without atomic writes
    builtin_weights(name)
    assert len(conversions) == 3
    builtin_weights(name)
    assert len(conversions) == 3


@pytest.fixture
def ncnn_copy(tmp_path: Path) -> tuple[Path, Path]:
    param, bin_ = source_files("realesr-animevideov3")
    return Path(shutil.copy(param, tmp_path)), Path(shutil.copy(bin_, tmp_path))


def test_leftover_bytes_are_an_error(ncnn_copy: tuple[Path, Path]) -> None:
    param, bin_ = ncnn_copy
    bin_.write_bytes(bin_.read_bytes() + b"\0\0\0\0")
    with pytest.raises(NcnnFormatError, match="4 bytes left over"):
        convert_ncnn(param, bin_, "compact")


def test_missing_bytes_are_an_error(ncnn_copy: tuple[Path, Path]) -> None:
    param, bin_ = ncnn_copy
    bin_.write_bytes(bin_.read_bytes()[:-4])
    with pytest.raises(NcnnFormatError, match="ends early"):
        convert_ncnn(param, bin_, "compact")


def test_wrong_architecture_and_unknown_layers_are_errors(ncnn_copy: tuple[Path, Path]) -> None:
    param, bin_ = ncnn_copy
    with pytest.raises(NcnnFormatError, match="RRDBNet"):
        convert_ncnn(param, bin_, "rrdb")
    param.write_text(param.read_text().replace("PReLU                    PRelu_1", "Swish PRelu_1"))
    with pytest.raises(NcnnFormatError, match="unsupported layer type Swish"):
        convert_ncnn(param, bin_, "compact")
