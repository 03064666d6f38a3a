"""Image files: atomic writes, image round trips, upscale_files, and the ``mrflow upscale`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sr_helpers import tiny_compact

from mrflow.cli import main
from mrflow.io import ImageFileError, atomic_write, load_image, save_image
from mrflow.upscalers import upscale_files


def _write_image(path: Path, mode: str, size: tuple[int, int], seed: int = 0) -> Path:
    channels = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_atomic_write_never_clobbers_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"first"))
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"second"))
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(RuntimeError("disk full")), overwrite=True)
    assert target.read_bytes() == b"first"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"third"), overwrite=True)
    assert target.read_bytes() == b"third" and os.listdir(tmp_path) == ["out.bin"]
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    assert target.stat().st_mode == plain.stat().st_mode  # not the private mode of temporary files


@pytest.mark.parametrize(("suffix", "channels"), [(".png", 4), (".png", 3), (".webp", 4), (".jpg", 3)])
def test_image_round_trip(tmp_path: Path, suffix: str, channels: int) -> None:
    smooth = torch.nn.functional.interpolate(torch.rand(1, channels, 3, 3), size=(16, 24), mode="bilinear")[0]
    image = (smooth * 255).round() / 255
    path = save_image(tmp_path / f"image{suffix}", image, quality=100)
    loaded = load_image(path)
    assert loaded.shape == image.shape
    if suffix == ".jpg":  # lossy even at quality 100 (chroma subsampling)
        assert (loaded - image).abs().mean() < 0.02
    else:
        assert (loaded - image).abs().max() < 1e-6


def test_jpeg_refuses_alpha_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ImageFileError, match="transparency"):
        save_image(tmp_path / "a.jpg", torch.rand(4, 8, 8))
    with pytest.raises(ImageFileError, match=r"\.bmp"):
        save_image(tmp_path / "a.bmp", torch.rand(3, 8, 8))


def test_upscale_files_rgb_and_rgba(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.safetensors"
    save_file(tiny_compact(), str(weights))
    rgba = _write_image(tmp_path / "a.png", "RGBA", (15, 11))
    rgb = _write_image(tmp_path / "b.jpg", "RGB", (9, 7))
    outputs = upscale_files([rgba, rgb], weights, scale=2, out=tmp_path / "out")
    assert [p.name for p in outputs] == ["a_x2.png", "b_x2.png"]
    assert Image.open(outputs[0]).mode == "RGBA" and Image.open(outputs[0]).size == (30, 22)
    assert Image.open(outputs[1]).mode == "RGB" and Image.open(outputs[1]).size == (18, 14)
    native = upscale_files([rgb], weights, out=tmp_path / "b.webp")
    assert Image.open(native[0]).size == (36, 28)
    with pytest.raises(FileExistsError):
        upscale_files([rgb], weights, out=tmp_path / "b.webp")


# --- the command line: one run in a subprocess as a user runs it, the rest in-process (faster) ----


def _mrflow(*args: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MRFLOW_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mrflow", "upscale", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _main(*args: str | Path) -> int:
    try:
        return main(["upscale", *map(str, args)])
    except SystemExit as exit_:  # argparse errors
        return int(exit_.code or 0)


def test_cli_happy_path_and_no_overwrite(
    tmp_path: Path, builtin_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = _write_image(tmp_path / "photo.png", "RGBA", (20, 14))
    args = (image, "--upscaler", "realesr-animevideov3", "--scale", "2", "--device", "cpu")
    first = _mrflow(*args, cache=builtin_cache)
    assert first.returncode == 0, first.stderr
    output = tmp_path / "photo_x2.png"
    assert first.stdout.strip() == str(output)
    assert Image.open(output).size == (40, 28) and Image.open(output).mode == "RGBA"
    before = output.read_bytes()
    output.write_bytes(b"keep me")
    assert _main(*args) == 1
    assert "exists" in capsys.readouterr().err and output.read_bytes() == b"keep me"
    assert _main(*args, "--overwrite") == 0 and output.read_bytes() == before


def test_cli_bad_argument_exits_2_in_a_subprocess(tmp_path: Path) -> None:
    image = _write_image(tmp_path / "in.png", "RGB", (8, 8))
    result = _mrflow(image, "--scale", "0", cache=tmp_path / "cache")
    assert result.returncode == 2 and "argument --scale" in result.stderr


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (("--scale", "two"), "--scale"),
        (("--scale", "40"), "--scale"),
        (("--upscaler", "no-such-model"), "--upscaler"),
        (("--tile", "-3"), "--tile"),
        (("--tile", "40"), "--tile"),  # not more than twice the default overlap
        (("--device", "tpu"), "--device"),
        (("second.png", "--out", "x.png"), "--out"),
    ],
)
def test_cli_bad_argument_exits_2_naming_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    argument: str,
) -> None:
    monkeypatch.setenv("MRFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    _write_image(tmp_path / "in.png", "RGB", (8, 8))
    _write_image(tmp_path / "second.png", "RGB", (8, 8))
    assert _main("in.png", *args) == 2
    assert f"argument {argument}" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # rejected before any model was loaded


def test_cli_missing_and_unreadable_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MRFLOW_CACHE_DIR", str(tmp_path / "cache"))
    assert _main(tmp_path / "absent.png") == 2
    assert "absent.png" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert _main(broken) == 1
    error = capsys.readouterr().err
    assert "cannot read image" in error and "broken.png" in error
    assert not (tmp_path / "cache").exists() and not list(tmp_path.glob("*_x*"))
