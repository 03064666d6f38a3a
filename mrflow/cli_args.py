"""Argument types and model options shared by the subcommands; bad values fail before models load."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")

logger = logging.getLogger(__name__)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {value}")
    return value


def nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def device_name(text: str) -> str:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} requested but CUDA is not available")
    return text


def resolve_device(text: str) -> torch.device:
    """``auto`` (CUDA if available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` as a device this machine has.

    Raises:
        ValueError: naming the value, for anything else or a CUDA device that is not there.
    """
    import torch

    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"not a device: {text!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"only cpu and cuda are supported, got {text!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{text!r}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("models")
    g.add_argument("--backbone", help="hub id or diffusers folder (default: the embedded tiny model)")
    g.add_argument("--upscaler", help="built-in upscaler name, weights file, or 'bicubic' (default: the backbone's)")
    g.add_argument("--device", type=device_name, help="cpu, cuda, cuda:1, ... (default: CUDA if available)")
    g.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="transformer/text dtype (auto: bf16 on CUDA, fp32 on CPU)",
    )


def load_pipeline(args: argparse.Namespace, state: Any = None) -> tuple[Any, dict[str, Any]]:
    """The pipeline the arguments ask for, and a record of what was loaded (for metadata)."""
    import torch

    from mrflow import MrFlowPipeline

    device = args.device
    if device is None and state is not None and state.num_processes > 1:
        device = str(state.device)
    dtype = None if args.dtype in (None, "auto") else getattr(torch, args.dtype)
    if getattr(args, "quiet", False):
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    pipe = MrFlowPipeline.from_pretrained(args.backbone, upscaler=args.upscaler, device=device, dtype=dtype)
    source = {
        "backbone": args.backbone,
        "upscaler": args.upscaler,
        "upscaler_name": pipe.upscaler.name,
        "device": str(pipe.device),
        "dtype": str(pipe.backbone.dtype).removeprefix("torch."),
    }
    logger.info("loaded %s", source)
    return pipe, source
