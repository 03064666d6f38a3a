"""Loading weights files: round trips, unsafe pickles, broken files, load_upscaler resolution."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sr_helpers import tiny_compact, tiny_rrdb, tiny_transformer

from mrflow.upscalers import (
    BicubicUpscaler,
    ModelFileError,
    SpandrelUpscaler,
    available_upscalers,
    load_upscaler,
)
from mrflow.upscalers.loading import load_sr_model

MODELS = {
    "rrdb-x4": (lambda: tiny_rrdb(4), "ESRGAN", 4),
    "rrdb-x2-unshuffle": (lambda: tiny_rrdb(2), "ESRGAN", 2),
    "compact-x4": (lambda: tiny_compact(4), "Compact", 4),
    "compact-x2": (lambda: tiny_compact(2), "Compact", 2),
}


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:  # a training checkpoint layout, unwrapped by canonicalisation
        torch.save({"params_ema": state}, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_round_trip_detects_architecture_and_scale(tmp_path: Path, model: str, suffix: str) -> None:
    make, arch_id, scale = MODELS[model]
    state = make()
    loaded = load_sr_model(_save(state, tmp_path / f"model{suffix}"))
    assert loaded.architecture.id == arch_id
    assert loaded.scale == scale
    reloaded = loaded.model.state_dict()
    assert all(torch.equal(reloaded[key], value) for key, value in state.items())


@pytest.mark.parametrize("arch", ["SwinIR", "HAT"])
def test_transformer_models_load_and_run(tmp_path: Path, arch: str) -> None:
    path = _save(tiny_transformer(arch), tmp_path / f"{arch}.safetensors")
    upscaler = load_upscaler(path)
    assert isinstance(upscaler, SpandrelUpscaler) and upscaler.scale == 2
    assert upscaler._descriptor.architecture.id == arch
    image = torch.rand(1, 3, 13, 18)  # below the model's 16 px minimum: padded, then cropped
    assert upscaler.upscale(image, (26, 36)).shape == (1, 3, 26, 36)


class _Exploit:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"conv_first.weight": _Exploit(marker)}, handle)
    with pytest.raises(ModelFileError, match="evil.pth"):
        load_sr_model(path)
    assert not marker.exists()


def test_malicious_torch_zip_is_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"body.0.weight": _Exploit(marker)}, path)
    with pytest.raises(ModelFileError, match="evil.pt"):
        load_upscaler(path)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_truncated_file_fails_clearly(tmp_path: Path, suffix: str) -> None:
    path = _save(tiny_compact(), tmp_path / f"model{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=rf"model\{suffix}.*(corrupt|truncated)"):
        load_sr_model(path)


def test_non_sr_state_dict_is_rejected(tmp_path: Path) -> None:
    path = _save({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "classifier.safetensors")
    with pytest.raises(ModelFileError, match="classifier.safetensors.*no supported"):
        load_sr_model(path)


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ModelFileError, match="model.onnx"):
        load_sr_model(path)
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_upscaler(tmp_path / "absent.pth")


def test_load_upscaler_resolves_every_kind_of_spec(tmp_path: Path) -> None:
    path = _save(tiny_compact(), tmp_path / "mine.safetensors")
    by_path = load_upscaler(str(path))
    assert isinstance(by_path, SpandrelUpscaler) and by_path.name == "mine.safetensors" and by_path.scale == 4
    assert load_upscaler(by_path) is by_path
    assert isinstance(load_upscaler("bicubic"), BicubicUpscaler)
    assert isinstance(load_upscaler(None), BicubicUpscaler)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ValueError, match="realesrgan-x4plus.*realesr-animevideov3") as info:
        load_upscaler("esrgan-x9000")
    assert "esrgan-x9000" in str(info.value)
    builtins = {"realesrgan-x4plus", "realesrgan-x4plus-anime", "realesr-animevideov3"}
    assert set(available_upscalers()) >= builtins
