"""``mrflow upscale``: super-resolve image files with a built-in or user-supplied model.

Exit codes: 0 success; 1 an input could not be read, an output exists, or the model failed;
2 a bad argument (reported before any model is loaded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mrflow.cli_args import resolve_device

# torch and the models are imported when the command runs, so building the parser stays instant.
if TYPE_CHECKING:
    import torch

    from mrflow.upscalers import UpscalerConfig


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _tile(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', 0 or a pixel count, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto', 0 or positive, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mrflow upscale``."""
    parser = subparsers.add_parser(
        "upscale",
        help="upscale image files with a super-resolution model",
        description="Upscale PNG/JPEG/WebP files (RGB or RGBA) with a built-in Real-ESRGAN model or any "
        "super-resolution weights file spandrel recognises (.safetensors, .pth, .pt, .ckpt).",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="input image files")
    parser.add_argument(
        "--upscaler",
        default="realesrgan-x4plus",
        metavar="NAME_OR_FILE",
        help="built-in name (realesrgan-x4plus, realesr-animevideov3, ...) or weights file (.safetensors, "
        ".pth, .pt, .ckpt); an unknown name lists the built-in ones (default: %(default)s)",
    )
    parser.add_argument("--scale", type=_scale, help="output/input size per side (default: native)")
    parser.add_argument(
        "--out",
        type=Path,
        help="output file (one input) or directory (default: beside each input)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--tile", type=_tile, default=None, help="tile side in px, 0 = never, auto (default)")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto", help="compute dtype")
    parser.set_defaults(func=run, parser=parser)


def _check_arguments(args: argparse.Namespace) -> tuple[torch.device, UpscalerConfig]:
    """Validate what argparse cannot; a bad argument exits with code 2 through ``parser.error``."""
    from mrflow.io import IMAGE_SUFFIXES
    from mrflow.upscalers import UpscalerConfig, available_upscalers
    from mrflow.upscalers.files import MAX_SCALE

    parser: argparse.ArgumentParser = args.parser
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        parser.error(f"argument --device: {exc}")
    spec = args.upscaler
    if spec not in available_upscalers() and not Path(spec).is_file():
        parser.error(
            f"argument --upscaler: {spec!r} is neither a file nor a built-in name ({', '.join(available_upscalers())})"
        )
    if args.scale is not None and args.scale > MAX_SCALE:
        parser.error(f"argument --scale: must be at most {MAX_SCALE:g}, got {args.scale:g}")
    out: Path | None = args.out
    is_file_name = out is not None and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir()
    if is_file_name and len(args.inputs) > 1:
        parser.error(f"argument --out: {out} is a file name but {len(args.inputs)} inputs were given")
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        parser.error(f"argument IN: no such file: {', '.join(missing)}")
    try:
        config = UpscalerConfig(precision=args.precision, tile_size=args.tile)
    except ValueError as exc:
        parser.error(f"argument --tile: {exc}")
    return device, config


def run(args: argparse.Namespace) -> int:
    """Run ``mrflow upscale``; returns the exit code."""
    from mrflow.io import ImageFileError
    from mrflow.upscalers import ModelFileError, upscale_files

    device, config = _check_arguments(args)
    try:
        outputs = upscale_files(
            args.inputs,
            args.upscaler,
            scale=args.scale,
            out=args.out,
            overwrite=args.overwrite,
            device=device,
            config=config,
        )
    except FileExistsError as exc:
        print(f"mrflow upscale: {exc}", file=sys.stderr)
        return 1
    except (ImageFileError, ModelFileError, ValueError, OSError) as exc:
        print(f"mrflow upscale: error: {exc}", file=sys.stderr)
        return 1
    for path in outputs:
        print(path)
    return 0
