"""Load super-resolution weights from a file, safely, into a spandrel model descriptor.

``.safetensors`` files hold tensors only. ``.pth``/``.pt``/``.ckpt`` files are pickles, which can run
arbitrary code when unpickled, so they are opened with ``torch.load(weights_only=True)``: only
tensors and plain containers are rebuilt, and a file that asks for anything else is refused before
any of it runs. TorchScript archives are refused too (they carry code).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import spandrel
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

__all__ = ["ModelFileError", "SUPPORTED_SUFFIXES", "load_sr_model", "read_state_dict"]

SUPPORTED_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")


class ModelFileError(ValueError):
    """A weights file could not be used as a super-resolution model; the message names the file."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a pickle, without executing code from the file.

    Nested checkpoints (``{"params_ema": ...}``, ``{"state_dict": ...}``) are unwrapped by spandrel's
    canonicalisation.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ModelFileError: if the file is corrupt, truncated, of an unknown type, or tries to run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"upscaler weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        expected = ", ".join(SUPPORTED_SUFFIXES)
        raise ModelFileError(f"{path}: unsupported weights file type {suffix!r}, expected {expected}")
    try:
        if suffix == ".safetensors":
            state = load_file(path, device="cpu")
        else:
            state = _load_pickle(path)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"{path}: refused to unpickle (not plain tensors, unsafe?): {exc}") from exc
    except (SafetensorError, RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated weights file: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: expected a state dict, found {type(state).__name__}")
    return spandrel.canonicalize_state_dict(state)


def _load_pickle(path: Path) -> object:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist()):
                raise ModelFileError(f"{path}: TorchScript archives are not supported, save a state dict")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=False)


def load_sr_model(path: str | Path) -> spandrel.ImageModelDescriptor:
    """Load a super-resolution model from a weights file; spandrel detects the architecture.

    Returns:
        A descriptor on the CPU in float32, in eval mode, for an RGB → RGB model.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ModelFileError: naming the file, if it is unreadable, unsafe, of an unsupported
            architecture, or not an RGB super-resolution model.
    """
    path = Path(path)
    state = read_state_dict(path)
    try:
        descriptor = spandrel.ModelLoader("cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise ModelFileError(f"{path}: no supported super-resolution architecture matches its keys") from exc
    except (RuntimeError, KeyError, ValueError, IndexError, AssertionError) as exc:
        raise ModelFileError(f"{path}: weights do not form a valid model: {exc}") from exc
    return check_sr_descriptor(descriptor, str(path))


def check_sr_descriptor(descriptor: spandrel.ModelDescriptor, source: str) -> spandrel.ImageModelDescriptor:
    """Accept only RGB → RGB image models meant for upscaling or restoration (not inpainting, not faces)."""
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose == "FaceSR":
        raise ModelFileError(f"{source}: {descriptor.architecture.name} is not a super-resolution model")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise ModelFileError(
            f"{source}: expected an RGB model, found {descriptor.input_channels} → "
            f"{descriptor.output_channels} channels"
        )
    logger.info("loaded %s: %s ×%d %s", source, descriptor.architecture.name, descriptor.scale, descriptor.tags)
    return descriptor.eval()
